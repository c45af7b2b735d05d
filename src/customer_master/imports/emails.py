"""Checking the contact e-mails of an import: only those the org does not already store as written.

The e-mail rule (`validation.normalize_email`, via `rows.normalize_emails`) is the costliest check of a
row, about twice all the others together. An e-mail the org already stores exactly as written passed the
rule when it was stored, and the rule is idempotent, so it needs no check — which makes a nightly
re-import of the same contacts much cheaper.

Before staging, the org's stored e-mails are loaded as a sorted array of 64-bit hashes (8 bytes each, so
a million contacts cost 8 MB); a cell whose hash is not in it is certainly not stored and is checked. A
cell whose hash is there is, all but certainly, stored: after staging one query counts the rows whose
e-mail is not stored exactly, and if that differs from the rows checked (a hash collision), every such
e-mail is checked, exactly as without the hashes.

Only the problems are kept: the cells that fail, and those the rule rewrites (case, spaces, an IDN).
(Checking in a worker process while reading was measured too: on 2 shared cores it was slower.)
"""

import array
import asyncio
import bisect
import hashlib
import sys
from collections.abc import Iterable

import asyncpg

from customer_master.auth.tenancy import OrgId
from customer_master.imports.rows import normalize_emails

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


class EmailCheck:
    """Collects the e-mails of staged rows that need the rule, checks them, and keeps the problems."""

    def __init__(self, known: KnownEmails) -> None:
        self.known = known
        self.rows_checked = 0
        self.problems: dict[str, Problem] = {}

    def check(self, cells: Iterable[str]) -> None:
        """In the reading thread, per batch: check the cells that are not stored as written."""
        chosen: dict[str, None] = {}
        for cell in cells:
            if not self.known or cell not in self.known:
                self.rows_checked += 1
                chosen[cell] = None
        self._keep(email_problems(list(chosen)))

    async def finish(self, conn: asyncpg.Connection, org_id: OrgId, staged_rows: int) -> None:
        """Make sure every e-mail not stored as written was checked (see the module's docstring)."""
        not_stored = _BY_HASH if staged_rows >= HASH_FROM_ROWS else _BY_INDEX
        if await conn.fetchval("SELECT count(*)" + not_stored, org_id) == self.rows_checked:
            return
        # A hash collision let an e-mail pass as stored: check every e-mail not stored as written.
        self.problems.clear()
        chunk: list[str] = []
        async for record in conn.cursor("SELECT DISTINCT r.contact_email" + not_stored, org_id, prefetch=EMAIL_CHUNK):
            chunk.append(record[0])
            if len(chunk) == EMAIL_CHUNK:
                self._keep(await asyncio.to_thread(email_problems, chunk))
                chunk = []
        self._keep(await asyncio.to_thread(email_problems, chunk))

    def _keep(self, problems: list[Problem]) -> None:
        for problem in problems:
            self.problems[problem[0]] = problem
