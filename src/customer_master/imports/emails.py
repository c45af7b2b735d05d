"""Checking the contact e-mails of an import in bulk: only those that need it, on another core when it pays.

The e-mail rule (`validation.normalize_email`, via `rows.normalize_emails`) is the costliest check of a
row, about as costly as all the others together. Two things keep it off the import's critical path:

- An e-mail the org already stores exactly as written passed the rule when it was stored, and the rule
  is idempotent, so it needs no check. Before staging, the org's stored e-mails are loaded as a sorted
  array of 64-bit hashes (8 bytes each, so a million contacts cost 8 MB); a cell whose hash is not in it
  is certainly not stored and is checked. A cell whose hash is there is, all but certainly, stored: after
  staging one query counts the rows whose e-mail is not stored exactly, and if that differs from the
  rows checked (a hash collision), every such e-mail is checked, exactly as without the hashes.
- For a large file, the cells are checked in a worker process while the import goes on reading, checking
  the other columns and copying rows into staging.

Only the problems come back: the cells that fail, and those the rule rewrites (case, spaces, an IDN).
"""

import array
import asyncio
import bisect
import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterable

import asyncpg

from customer_master.auth.tenancy import OrgId
from customer_master.imports.rows import normalize_emails

# A file at least this large has its e-mails checked in a worker process (when there is a second core).
PARALLEL_MIN_BYTES = 4 * 1024 * 1024
EMAIL_CHUNK = 10_000

# The first 8 bytes of the MD5 of the e-mail as stored, as a signed big-endian integer (same in Python).
KNOWN_HASHES = """
SELECT string_agg(int8send(h), ''::bytea ORDER BY h)
  FROM (SELECT DISTINCT ('x' || left(md5(email::text), 16))::bit(64)::bigint AS h
          FROM customer_contact WHERE org_id = $1) AS known
"""
# Rows whose e-mail the org does not store exactly as written. With the citext condition the planner can
# probe the (org_id, email) index row by row, best for a few rows; without it, it hashes the org's e-mails
# as text once, best for many (hashing citext costs a lower() per value).
_NOT_STORED = """
  FROM cm_import_row r
 WHERE r.contact_email IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM customer_contact cc
                    WHERE cc.org_id = $1 {} AND cc.email::text = r.contact_email)
"""
_BY_INDEX = _NOT_STORED.format("AND cc.email = r.contact_email::citext")
_BY_HASH = _NOT_STORED.format("")
HASH_FROM_ROWS = 5_000

Problem = tuple[str, str | None, str | None]  # (cell, normalised, error)


def email_problems(cells: list[str]) -> list[Problem]:
    """The cells that fail the e-mail rule or that it rewrites (run in the worker process, too)."""
    return [result for result in normalize_emails(cells) if result[2] is not None or result[1] != result[0]]


def _hash(cell: str) -> int:
    return int.from_bytes(hashlib.md5(cell.encode(), usedforsecurity=False).digest()[:8], "big", signed=True)


class KnownEmails:
    """The org's stored e-mails as sorted hashes: `cell in known` is False for any e-mail not stored."""

    def __init__(self, hashes: "array.array[int]") -> None:
        self._hashes = hashes

    def __bool__(self) -> bool:
        return len(self._hashes) > 0

    def __contains__(self, cell: str) -> bool:
        value = _hash(cell)
        index = bisect.bisect_left(self._hashes, value)
        return index < len(self._hashes) and self._hashes[index] == value


async def load_known_emails(conn: asyncpg.Connection, org_id: OrgId) -> KnownEmails:
    packed: bytes | None = await conn.fetchval(KNOWN_HASHES, org_id)
    hashes = array.array("q")
    if packed:
        hashes.frombytes(packed)
        if sys.byteorder == "little":
            hashes.byteswap()
    return KnownEmails(hashes)


class _Worker:
    """A child process (`python -m customer_master.imports.email_worker`) checking e-mails for one import.

    A plain subprocess rather than `multiprocessing`: nothing of the parent (its `__main__`, its
    threads) is re-run or inherited. Batches go in as length-prefixed JSON on stdin, problems come back
    the same way on stdout; a full pipe makes the sender wait, so memory stays flat.
    """

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.problems: list[Problem] = []
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls) -> "_Worker":
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "customer_master.imports.email_worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def send(self, cells: list[str]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(frame(json.dumps(cells).encode()))
        await self.process.stdin.drain()

    async def close(self) -> list[Problem]:
        """Everything sent checked: the problems found (raises when the worker failed)."""
        assert self.process.stdin is not None
        self.process.stdin.write(frame(b""))
        await self.process.stdin.drain()
        self.process.stdin.close()
        await self.reader
        if await self.process.wait() != 0:
            raise RuntimeError(f"the e-mail worker exited with {self.process.returncode}")
        return self.problems

    def kill(self) -> None:
        self.reader.cancel()
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while True:
            size = int.from_bytes(await self.process.stdout.readexactly(4), "big")
            if size == 0:
                return
            self.problems.extend(tuple(problem) for problem in json.loads(await self.process.stdout.readexactly(size)))


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


class EmailCheck:
    """Collects the e-mails of staged rows that need the rule, checks them, and keeps the problems."""

    def __init__(self, known: KnownEmails, *, parallel: bool) -> None:
        self.known = known
        self.parallel = parallel and (os.cpu_count() or 1) > 1
        self.rows_checked = 0
        self.problems: dict[str, Problem] = {}
        self._worker: _Worker | None = None
        self._failed = False

    def select(self, cells: Iterable[str]) -> list[str]:
        """In the reading thread: the distinct cells of a batch that need checking (counting their rows)."""
        chosen: dict[str, None] = {}
        for cell in cells:
            if not self.known or cell not in self.known:
                self.rows_checked += 1
                chosen[cell] = None
        return list(chosen)

    def check_here(self, cells: list[str]) -> None:
        """In the reading thread, for a small file: check at once."""
        self._keep(email_problems(cells))

    async def hand_over(self, cells: list[str]) -> None:
        """For a large file: give the cells to the worker process (started with the first batch)."""
        if not cells or self._failed:
            return
        try:
            if self._worker is None:
                self._worker = await _Worker.start()
            await self._worker.send(cells)
        except (OSError, RuntimeError):
            self._give_up()

    async def finish(self, conn: asyncpg.Connection, org_id: OrgId, staged_rows: int) -> None:
        """Wait for the worker, then make sure every e-mail not stored as written was checked."""
        if self._worker is not None and not self._failed:
            try:
                self._keep(await self._worker.close())
            except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError):
                self._give_up()
        not_stored = _BY_HASH if staged_rows >= HASH_FROM_ROWS else _BY_INDEX
        if self._failed or await conn.fetchval("SELECT count(*)" + not_stored, org_id) != self.rows_checked:
            # A hash collision (or a failed worker): check every e-mail not stored as written, here.
            self.problems.clear()
            chunk: list[str] = []
            unknown = "SELECT DISTINCT r.contact_email" + not_stored
            async for record in conn.cursor(unknown, org_id, prefetch=EMAIL_CHUNK):
                chunk.append(record[0])
                if len(chunk) == EMAIL_CHUNK:
                    self._keep(await asyncio.to_thread(email_problems, chunk))
                    chunk = []
            self._keep(await asyncio.to_thread(email_problems, chunk))

    def abandon(self) -> None:
        """The import failed: stop the worker, if any."""
        if self._worker is not None:
            self._worker.kill()

    def _give_up(self) -> None:
        self._failed = True
        self.abandon()

    def _keep(self, problems: list[Problem]) -> None:
        for problem in problems:
            self.problems[problem[0]] = problem
