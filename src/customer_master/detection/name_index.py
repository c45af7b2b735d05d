"""S5's name search in memory: every customer-name key of an org as trigram posting lists.

Why: pg_trgm's GIN index can only pre-filter on "30 % of the compared text's trigrams occur in the name";
it does not know how many trigrams the name has. A text with a common word (a trade, an -er surname)
made PostgreSQL fetch and recheck 5,000–15,000 names of a 300,000-customer org, ~100 ms per compared
line, and a document has ten header lines. Counting shared trigrams over posting lists does the same
work in about a millisecond a line.

Exact, not approximate: the trigrams are PostgreSQL's own (`show_trgm` of the stored `name_key`, as the
three bytes pg_trgm compares), and the similarity is pg_trgm's `count / (len1 + len2 − count)` in the
same float4 arithmetic, so a name matches here exactly when `similarity(name_key, key) >= 0.3` holds in
SQL. Every name tied with the fifth best is handed on: the ranking by name, in the database's collation,
stays in SQL.

Current, not stale: a request reads its org's name version (`customer_name_version`, moved by triggers
when a transaction that changes names commits, migration 0005). A copy that is behind applies the listed
changes (`customer_name_change`) or, after a large change, loads the org anew — each in one statement,
so the copy is one snapshot of the database. Copies live per engine (one per process and database) and
the least recently used orgs are dropped beyond `MAX_NAMES` names.
"""

import asyncio
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from customer_master.auth.tenancy import OrgId
from customer_master.detection import signals

MIN_SIMILARITY = np.float32(signals.S5_MIN_SIMILARITY)
# Names kept in memory per process (~120 bytes each); the org a request needs is always loaded.
MAX_NAMES = 3_000_000
# Customers written since an org was loaded that are searched one by one; beyond this it is loaded anew.
MAX_WRITTEN = 500
# Answers kept per org for compared texts that come again (see `OrgNames._answers`); an answer with more
# matches (many names tied at the fifth place) is not kept.
MAX_ANSWERS = 1_000
MAX_ANSWER_MATCHES = 50

IntArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float32]

# One statement, one snapshot: the version and every live customer's name key of the org (merged customers
# are no candidates), packed for numpy. A name whose
# trigrams are all printable comes as their bytes, three per trigram; the others (pg_trgm shows a
# trigram of non-ASCII letters as `0x` and the hex of its three bytes) come as text.
LOAD = """
WITH named AS MATERIALIZED (
  SELECT id, trigrams, packed, octet_length(packed) = 3 * cardinality(trigrams) AS printable
    FROM (SELECT id, trigrams, convert_to(array_to_string(trigrams, ''), 'UTF8') AS packed
            FROM (SELECT c.id, show_trgm(c.name_key) AS trigrams FROM customer c
                   WHERE c.org_id = $1 AND c.merged_into IS NULL OFFSET 0) AS k
          OFFSET 0) AS t)
SELECT current_setting('server_encoding') AS encoding,
       coalesce((SELECT version FROM customer_name_version WHERE org_id = $1), 0) AS version,
       (SELECT epoch FROM customer_name_version WHERE org_id = $1) AS epoch,
       string_agg(uuid_send(id), ''::bytea ORDER BY id) AS ids,
       string_agg(int4send(cardinality(trigrams)), ''::bytea ORDER BY id) AS sizes,
       string_agg(packed, ''::bytea ORDER BY id) FILTER (WHERE printable) AS packed,
       array_agg(id ORDER BY id) FILTER (WHERE NOT printable) AS other_ids,
       array_agg(array_to_string(trigrams, ',') ORDER BY id) FILTER (WHERE NOT printable) AS other_trigrams
  FROM named"""


def decode_load(row: Any) -> tuple[Any, Any, Any, Any]:
    """The row of `LOAD` as arrays: the customers' ids (sorted), their trigram counts, and one (row, code)
    pair per trigram (`rows`, `codes`, int32). Detection's name index and the duplicates' name sets read it."""
    if row["encoding"] != "UTF8":
        # show_trgm prints a trigram of non-ASCII letters as its bytes unless the encoding is multi-byte.
        raise RuntimeError(f"names need a UTF8 database, not {row['encoding']}")
    ids = np.frombuffer(row["ids"] or b"", dtype="S16")
    sizes = np.frombuffer(row["sizes"] or b"", dtype=">i4").astype(np.int32)
    packed = np.frombuffer(row["packed"] or b"", dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    codes = (packed[:, 0] << 16) | (packed[:, 1] << 8) | packed[:, 2]
    packed_rows = np.ones(len(ids), dtype=bool)
    other_codes: list[int] = []
    other_rows: list[int] = []
    if row["other_ids"]:
        positions = np.searchsorted(ids, np.array([i.bytes for i in row["other_ids"]], dtype="S16"))
        packed_rows[positions] = False
        for position, text in zip(positions.tolist(), row["other_trigrams"], strict=True):
            trigrams = trigram_codes(text.split(","))
            other_codes.extend(trigrams)
            other_rows.extend([position] * len(trigrams))
    rows = np.repeat(np.flatnonzero(packed_rows).astype(np.int32), sizes[packed_rows])
    return (
        ids,
        sizes,
        np.concatenate([rows, np.array(other_rows, dtype=np.int32)]),
        np.concatenate([codes, np.array(other_codes, dtype=np.int32)]),
    )


# The current version and, for each step after the copy's, the customers it changed with their current
# trigrams (NULL when deleted or merged away: a tombstone is no name; brought back by an undo, it is one
# again) — at most $3 rows: more are not caught up on but loaded anew.
CHANGES = """
SELECT v.version, v.epoch, ch.version AS step, ch.customer_id, c.id IS NOT NULL AS present,
       show_trgm(c.name_key) AS trigrams
  FROM customer_name_version v
  LEFT JOIN customer_name_change ch ON ch.org_id = v.org_id AND ch.version > $2
  LEFT JOIN customer c ON c.org_id = v.org_id AND c.id = ch.customer_id AND c.merged_into IS NULL
 WHERE v.org_id = $1
 LIMIT $3"""


def trigram_code(trigram: str) -> int:
    """The three bytes pg_trgm compares, as one number, from a `show_trgm` element."""
    if len(trigram) == 3:
        raw = trigram.encode()
        return (raw[0] << 16) | (raw[1] << 8) | raw[2]
    return int(trigram[2:], 16)  # shown as 0x and six hex digits


def trigram_codes(trigrams: list[str]) -> frozenset[int]:
    return frozenset(trigram_code(t) for t in trigrams)


def similarities(shared: npt.NDArray[np.integer[Any]], size: int, sizes: npt.NDArray[np.integer[Any]]) -> FloatArray:
    """pg_trgm's similarity of a key with `size` trigrams to names with `sizes` trigrams, `shared` of them in
    common: `count / (len1 + len2 − count)`, in its float4 arithmetic."""
    return np.divide(shared, size + sizes - shared, dtype=np.float32)


@dataclass(frozen=True)
class Match:
    customer_id: uuid.UUID
    similarity: float


class OrgNames:
    """One org's name keys at one version: the loaded names (by id) and the customers written since."""

    def __init__(
        self,
        epoch: uuid.UUID | None,
        version: int,
        ids: npt.NDArray[np.bytes_],
        sizes: IntArray,
        codes: IntArray,
        rows: IntArray,
    ) -> None:
        """`ids` in order, `sizes[i]` the number of trigrams of `ids[i]`; `codes[k]` is a trigram of `ids[rows[k]]`."""
        self.epoch = epoch
        self.version = version
        self._ids = ids
        self._sizes = sizes
        self._alive = np.ones(len(ids), dtype=bool)
        order = np.argsort(codes, kind="stable")
        self._rows: IntArray = rows[order]  # the posting lists, one after the other
        ordered = codes[order]
        starts = np.flatnonzero(np.diff(ordered, prepend=-1))  # where each trigram's list begins
        self._codes: IntArray = ordered[starts]
        self._bounds = np.append(starts, len(order))
        self._written: dict[bytes, frozenset[int]] = {}
        # Answers by compared key: the org's own name and address head nearly every order it receives,
        # and a sender's letterhead every order from that sender. Valid until the names change.
        self._answers: OrderedDict[tuple[frozenset[int], int], list[Match]] = OrderedDict()

    @property
    def size(self) -> int:
        return len(self._ids) + len(self._written)

    @classmethod
    def from_load(cls, row: Any) -> "OrgNames":
        """From the row of `LOAD`."""
        ids, sizes, rows, codes = decode_load(row)
        return cls(row["epoch"], row["version"], ids, sizes.astype(np.int32), codes, rows)

    def apply(self, version: int, changed: dict[bytes, frozenset[int] | None]) -> None:
        """Catch up to `version`: `changed` maps each changed customer to its trigram codes (None: deleted)."""
        for customer_id, codes in changed.items():
            position = int(np.searchsorted(self._ids, np.array([customer_id], dtype="S16"))[0])
            if position < len(self._ids) and _id_bytes(self._ids[position]) == customer_id:
                self._alive[position] = False
            self._written.pop(customer_id, None)
            if codes is not None:
                self._written[customer_id] = codes
        self.version = version
        self._answers.clear()

    @property
    def written(self) -> int:
        return len(self._written)

    def most_similar(self, trigrams: list[str], limit: int = signals.S5_MAX_CUSTOMERS) -> list[Match]:
        """The names at least 0.3 similar to a key with these trigrams: the `limit` most similar, and every
        name tied with the last of them."""
        query = trigram_codes(trigrams)
        answer = self._answers.get((query, limit))
        if answer is None:
            answer = self._search(query, limit)
            if len(answer) <= MAX_ANSWER_MATCHES:
                self._answers[(query, limit)] = answer
                if len(self._answers) > MAX_ANSWERS:
                    self._answers.popitem(last=False)
        else:
            self._answers.move_to_end((query, limit))
        return list(answer)

    def _search(self, query: frozenset[int], limit: int) -> list[Match]:
        size = len(query)
        if not size:
            return []
        found_ids: list[bytes] = []
        found_sims: list[FloatArray] = []
        positions = np.searchsorted(self._codes, np.fromiter(query, dtype=np.int32, count=size))
        lists = [
            self._rows[self._bounds[p] : self._bounds[p + 1]]
            for p, code in zip(positions.tolist(), query, strict=True)
            if p < len(self._codes) and self._codes[p] == code
        ]
        if lists:
            shared = np.bincount(np.concatenate(lists), minlength=len(self._ids))
            # A name shares at least 30 % of the key's trigrams to reach 0.3 (its similarity is at most
            # shared / size); the bound is rounded down, the exact test follows.
            rows = np.flatnonzero(shared >= max(1, int(signals.S5_MIN_SIMILARITY * size)))
            counts = shared[rows]
            sims = similarities(counts, size, self._sizes[rows])
            keep = (sims >= MIN_SIMILARITY) & self._alive[rows]
            found_ids.extend(self._ids[rows[keep]].tolist())
            found_sims.append(sims[keep])
        if self._written:
            written_ids = list(self._written)
            shared = np.array([len(query & self._written[i]) for i in written_ids])
            sims = similarities(shared, size, np.array([len(self._written[i]) for i in written_ids]))
            keep = sims >= MIN_SIMILARITY
            found_ids.extend(i for i, kept in zip(written_ids, keep.tolist(), strict=True) if kept)
            found_sims.append(sims[keep])
        sims = np.concatenate(found_sims) if found_sims else np.array([], dtype=np.float32)
        chosen = np.arange(len(sims))
        if len(sims) > limit:
            last = np.partition(sims, len(sims) - limit)[len(sims) - limit]
            chosen = np.flatnonzero(sims >= last)
        return [Match(uuid.UUID(bytes=_id_bytes(found_ids[i])), float(sims[i])) for i in chosen.tolist()]


def _id_bytes(value: bytes) -> bytes:
    """A customer id's 16 bytes: numpy's `S16` drops trailing zero bytes when it hands an element out."""
    return value.ljust(16, b"\0")


class NameIndexes:
    """The orgs' name keys of one database, in this process, least recently used first."""

    def __init__(self) -> None:
        self._orgs: OrderedDict[OrgId, OrgNames] = OrderedDict()
        self._locks: dict[OrgId, asyncio.Lock] = {}

    def get(self, org_id: OrgId) -> OrgNames | None:
        return self._orgs.get(org_id)

    async def current(self, conn: asyncpg.Connection, org_id: OrgId, epoch: uuid.UUID | None, version: int) -> OrgNames:
        """The org's names at `version` (read by the caller) or later."""
        names = self._fresh(org_id, epoch, version)
        if names is None:
            async with self._locks.setdefault(org_id, asyncio.Lock()):
                names = self._fresh(org_id, epoch, version)  # another request may have caught up meanwhile
                if names is None:
                    names = await self._catch_up(conn, org_id, epoch) or await self._load(conn, org_id)
                    self._orgs[org_id] = names
                    self._evict(keep=org_id)
        self._orgs.move_to_end(org_id)
        return names

    def _fresh(self, org_id: OrgId, epoch: uuid.UUID | None, version: int) -> OrgNames | None:
        names = self._orgs.get(org_id)
        return names if names is not None and names.epoch == epoch and names.version >= version else None

    async def _catch_up(self, conn: asyncpg.Connection, org_id: OrgId, epoch: uuid.UUID | None) -> OrgNames | None:
        """The copy brought up to date with the listed changes; None when they do not reach back to it."""
        names = self._orgs.get(org_id)
        if names is None or names.epoch != epoch:
            return None
        rows = await conn.fetch(CHANGES, org_id, names.version, MAX_WRITTEN + 1)
        if not rows or rows[0]["epoch"] != names.epoch or len(rows) > MAX_WRITTEN:
            return None
        version = rows[0]["version"]
        steps = {row["step"] for row in rows if row["step"] is not None}
        if steps != set(range(names.version + 1, version + 1)) or any(
            row["step"] is not None and row["customer_id"] is None for row in rows
        ):
            return None  # pruned steps, or a step too large to list
        changed: dict[bytes, frozenset[int] | None] = {
            row["customer_id"].bytes: trigram_codes(row["trigrams"]) if row["present"] else None
            for row in rows
            if row["customer_id"] is not None
        }
        if names.written + len(changed) > MAX_WRITTEN:
            return None
        names.apply(version, changed)
        return names

    async def _load(self, conn: asyncpg.Connection, org_id: OrgId) -> OrgNames:
        async with conn.transaction():
            # The statement's cost passes jit_above_cost from about 500,000 names; compiling costs more
            # than it saves here. Its sorts of 16-byte ids fit in 64 MB up to a few million names.
            await conn.execute("SELECT set_config('jit', 'off', true), set_config('work_mem', '64MB', true)")
            row = await conn.fetchrow(LOAD, org_id)
        return OrgNames.from_load(row)

    def _evict(self, keep: OrgId) -> None:
        """Drop the least recently used orgs while more than `MAX_NAMES` names are held, never `keep`."""
        held = sum(names.size for names in self._orgs.values())
        for org_id in list(self._orgs):
            if held <= MAX_NAMES:
                break
            if org_id != keep:
                held -= self._orgs.pop(org_id).size


_INDEXES: "weakref.WeakKeyDictionary[AsyncEngine, NameIndexes]" = weakref.WeakKeyDictionary()


def indexes_for(session: AsyncSession) -> NameIndexes:
    """The name indexes of the session's database: held per engine, so one process serving one database
    shares them between requests, and a copy never meets another database or event loop."""
    engine = session.bind
    if not isinstance(engine, AsyncEngine):
        raise TypeError("the session is not bound to an engine")
    return _INDEXES.setdefault(engine, NameIndexes())
