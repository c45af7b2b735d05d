"""Similar names in memory: the pairs of an org's live customers whose company keys are similar (API.md §12).

Why not SQL: pairs need every name compared with every other, and pg_trgm can only look names up one at a
time (at 100,000 customers, 100,000 index probes of 1–5 ms each; the trigram index on `name_key` was dropped
in migration 0005 anyway). Here the org's keys are held as trigram sets and joined all at once:

- Trigrams are PostgreSQL's own (`show_trgm(name_key)`, decoded as detection's `name_index` does) and the
  similarity is pg_trgm's `shared / (len1 + len2 − shared)` in its float4 arithmetic, so a pair is similar
  here exactly when `similarity(a.name_key, b.name_key)` says so in SQL.
- Candidates by prefix filtering (Bayardo et al., "Scaling up all pairs similarity search", 2007): with the
  trigrams ordered from rare to common, two sets of similarity ≥ θ share at least one of their first
  `|x| − ⌈θ·|x|⌉ + 1` trigrams. Pairs are enumerated within each such trigram's list of names.
- Most candidates share only a common word (two "Müller …"); a 256-bit signature per name (trigram rank
  mod 256) bounds their overlap from above — the bits both have, plus the fewer trigrams that either name
  lost to collisions within itself — and drops them before the exact count, which looks each remaining
  pair's trigrams up in a sorted (name, trigram) array.
- The one approximation: a prefix list longer than the budget allows (`PAIR_BUDGET`, spent from the shortest
  lists up) is not enumerated. A pair that shares only such trigrams in its prefixes — names made of nothing
  but the org's most common words — is not found unless the two keys are equal (equal trigram sets are
  grouped and paired on their own). `bench/duplicates.py` measures what this misses.

Current, not stale: a set is built for the org's name version (`customer_name_version`, moved at commit by
every transaction that adds, renames, deletes, merges away or brings back a customer, migrations 0005/0009)
and kept per engine until the version moves; the pairs of each threshold are kept beside it.
"""

import asyncio
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from customer_master.auth.tenancy import OrgId
from customer_master.detection import name_index

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

# Pairs enumerated from prefix lists per threshold (the approximation above); each costs ~50 ns.
PAIR_BUDGET = 20_000_000
# Pairs checked against the signatures at once (64 bytes each while checked).
CHUNK = 1_000_000
SIGNATURE_WORDS = 4  # 256 bits
# Names kept in memory per process (~200 bytes each); the org a request needs is always kept.
MAX_NAMES = 2_000_000


@dataclass
class NamePairs:
    """Pairs of rows (`low < high`) with their similarity; what finding them cost."""

    low: IntArray
    high: IntArray
    similarity: FloatArray
    enumerated: int = 0
    skipped_lists: int = 0
    longest_list: int = 0


def ragged_pairs(starts: IntArray, sizes: IntArray) -> tuple[IntArray, IntArray]:
    """Every pair (i, j), i < j, of positions within each group `[start, start + size)`."""
    sizes = sizes.astype(np.int64)
    per_group = sizes * (sizes - 1) // 2
    if not per_group.sum():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    # Each member pairs with the members after it: member k of a group of g has g − 1 − k partners.
    members = np.repeat(starts.astype(np.int64), sizes) + _ranks(sizes)
    partners = np.repeat(sizes, sizes) - 1 - _ranks(sizes)
    first = np.repeat(members, partners)
    second = first + 1 + _ranks(partners)
    return first, second


def _ranks(counts: IntArray) -> IntArray:
    """0, 1, …, c − 1 for each count c, concatenated."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def required_overlap(size_a: IntArray, size_b: IntArray, threshold: float) -> IntArray:
    """The fewest shared trigrams for a similarity ≥ threshold: `o / (a + b − o) ≥ θ` ⇔ `o ≥ θ (a + b) / (1 + θ)`
    (rounded down by a hair: the exact float4 test comes after), and at least 1."""
    need = np.ceil(threshold * (size_a + size_b) / (1 + threshold) - 1e-6).astype(np.int64)
    return np.maximum(need, 1)


class OrgNameSet:
    """One org's live customers at one name version: ids in order (a row is an index into them), trigram sets."""

    def __init__(
        self, epoch: uuid.UUID | None, version: int, ids: npt.NDArray[np.bytes_], rows: IntArray, codes: IntArray
    ) -> None:
        """`codes[k]` is a trigram (as `name_index.trigram_code`) of the customer `ids[rows[k]]`."""
        self.epoch = epoch
        self.version = version
        self.ids = ids
        n = len(ids)
        distinct, tokens = np.unique(codes, return_inverse=True)
        tokens = tokens.astype(np.int64).reshape(-1)
        self.tokens_count = len(distinct)
        frequency = np.bincount(tokens, minlength=len(distinct))
        rank = np.empty(len(distinct), np.int64)
        rank[np.lexsort((np.arange(len(distinct)), frequency))] = np.arange(len(distinct))
        ranked = rank[tokens]  # rare first
        order = np.lexsort((ranked, rows))
        self.rows = rows[order].astype(np.int64)
        self.ranked = ranked[order]  # each name's trigrams, rarest first
        self.sizes = np.bincount(self.rows, minlength=n).astype(np.int64)
        self.starts = np.cumsum(self.sizes) - self.sizes
        self.keys = np.sort(self.rows * max(1, len(distinct)) + self.ranked)
        self.signatures = np.zeros((n, SIGNATURE_WORDS), np.uint64)
        bit = self.ranked % (64 * SIGNATURE_WORDS)
        ones = np.left_shift(np.uint64(1), (bit % 64).astype(np.uint64))
        np.bitwise_or.at(self.signatures, (self.rows, bit // 64), ones)
        # Trigrams of one name that share a bit: two shared trigrams on one bit count once in `a & b`.
        self.collisions = self.sizes - np.bitwise_count(self.signatures).sum(axis=1, dtype=np.int64)
        self._pairs: dict[float, NamePairs] = {}

    @property
    def size(self) -> int:
        return len(self.ids)

    def rows_of(self, customer_ids: list[uuid.UUID]) -> IntArray:
        """The rows of these customers; −1 for one that is not live (deleted or merged away since)."""
        wanted = np.array([i.bytes for i in customer_ids], dtype="S16")
        positions = np.searchsorted(self.ids, wanted)
        found = positions < len(self.ids)
        found[found] = self.ids[positions[found]] == wanted[found]
        return np.where(found, positions, -1).astype(np.int64)

    def position(self, customer_id: uuid.UUID) -> tuple[int, bool]:
        """Where this id sorts among the rows, and whether it is one of them (for cursors)."""
        wanted = np.array([customer_id.bytes], dtype="S16")
        at = int(np.searchsorted(self.ids, wanted)[0])
        return at, at < len(self.ids) and bytes(self.ids[at]).ljust(16, b"\0") == customer_id.bytes

    def customer_id(self, row: int) -> uuid.UUID:
        return uuid.UUID(bytes=bytes(self.ids[row]).ljust(16, b"\0"))  # numpy drops trailing zero bytes

    # --- similarity of given pairs -----------------------------------------------------------

    def similar(self, low: IntArray, high: IntArray, threshold: float) -> tuple[IntArray, FloatArray]:
        """Of the pairs (low[i], high[i]): the indexes of those at least `threshold` similar, and their similarity."""
        kept = np.flatnonzero(self._may_reach(low, high, threshold))
        shared = self._overlaps(low[kept], high[kept])
        total = self.sizes[low[kept]] + self.sizes[high[kept]] - shared
        similarity = np.divide(shared, np.maximum(total, 1), dtype=np.float32)
        reached = (shared > 0) & (similarity >= np.float32(threshold))
        return kept[reached], similarity[reached]

    def _may_reach(self, low: IntArray, high: IntArray, threshold: float) -> npt.NDArray[np.bool_]:
        """Length and signature filters: False only for pairs that cannot reach the threshold."""
        result = np.zeros(len(low), dtype=bool)
        for begin in range(0, len(low), CHUNK):
            a, b = low[begin : begin + CHUNK], high[begin : begin + CHUNK]
            need = required_overlap(self.sizes[a], self.sizes[b], threshold)
            possible = np.minimum(self.sizes[a], self.sizes[b]) >= need
            index = np.flatnonzero(possible)
            a, b = a[index], b[index]
            bound = np.bitwise_count(self.signatures[a] & self.signatures[b]).sum(axis=1, dtype=np.int64)
            bound += np.minimum(self.collisions[a], self.collisions[b])
            possible[index] = bound >= need[index]
            result[begin : begin + CHUNK] = possible
        return result

    def _overlaps(self, low: IntArray, high: IntArray) -> IntArray:
        """Exactly how many trigrams each pair shares: each trigram of `high` looked up among `low`'s."""
        if not len(low):
            return np.empty(0, np.int64)
        counts = self.sizes[high]
        pair = np.repeat(np.arange(len(low)), counts)
        entry = np.repeat(self.starts[high], counts) + _ranks(counts)
        wanted = low[pair] * max(1, self.tokens_count) + self.ranked[entry]
        at = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        return np.bincount(pair[self.keys[at] == wanted], minlength=len(low)).astype(np.int64)

    # --- all similar pairs -------------------------------------------------------------------

    def pairs(self, threshold: float) -> NamePairs:
        """Every pair at least `threshold` (≥ 0.5) similar — but see the module's note on `PAIR_BUDGET`."""
        found = self._pairs.get(threshold)
        if found is None:
            found = self._pairs[threshold] = self._all_pairs(threshold)
        return found

    def _all_pairs(self, threshold: float) -> NamePairs:
        n = len(self.ids)
        position = np.arange(len(self.rows)) - self.starts[self.rows]
        # A name probes with its rarest |x| − ⌈θ|x|⌉ + 1 trigrams and is found by its rarest |y| − ⌈2θ/(1+θ)|y|⌉ + 1,
        # by names at least as long (AllPairs' indexing prefix: with |x| ≥ |y| the pair shares ≥ 2θ/(1+θ)|y|).
        probe = in_prefix(position, self.sizes[self.rows], threshold)
        index = in_prefix(position, self.sizes[self.rows], 2 * threshold / (1 + threshold))
        equal_rows, equal_groups = self._equal_set_groups()
        lists_p = np.concatenate([self.ranked[probe], self.tokens_count + equal_groups])
        rows_p = np.concatenate([self.rows[probe], equal_rows])
        lists_i = np.concatenate([self.ranked[index], self.tokens_count + equal_groups])
        rows_i = np.concatenate([self.rows[index], equal_rows])
        order_p, order_i = np.argsort(lists_p, kind="stable"), np.argsort(lists_i, kind="stable")
        lists_p, rows_p, lists_i, rows_i = lists_p[order_p], rows_p[order_p], lists_i[order_i], rows_i[order_i]
        count_p = np.bincount(lists_p, minlength=self.tokens_count + len(equal_rows) + 1)
        count_i = np.bincount(lists_i, minlength=len(count_p))
        cost = count_p * count_i
        by_cost = np.argsort(cost, kind="stable")
        affordable = np.zeros(len(cost), dtype=bool)
        affordable[by_cost[np.cumsum(cost[by_cost]) <= PAIR_BUDGET]] = True
        affordable &= cost > 1
        result = NamePairs(
            np.empty(0, np.int64),
            np.empty(0, np.int64),
            np.empty(0, np.float32),
            enumerated=int(cost[affordable].sum()),
            skipped_lists=int(((cost > 1) & ~affordable).sum()),
            longest_list=int(count_p[affordable].max(initial=0)),
        )
        start_p, start_i = np.cumsum(count_p) - count_p, np.cumsum(count_i) - count_i
        candidates: list[IntArray] = []
        for group in _chunks(np.flatnonzero(affordable), cost, CHUNK):
            # Every probing entry of a list with every indexing entry of it.
            probing = np.repeat(start_p[group], count_p[group]) + _ranks(count_p[group])
            partners = np.repeat(count_i[group], count_p[group])
            x = np.repeat(rows_p[probing], partners)
            y = rows_i[np.repeat(np.repeat(start_i[group], count_p[group]), partners) + _ranks(partners)]
            keep = (self.sizes[x] >= self.sizes[y]) & (x != y)
            low, high = np.minimum(x[keep], y[keep]), np.maximum(x[keep], y[keep])
            keep = self._may_reach(low, high, threshold)
            candidates.append(low[keep] * n + high[keep])
        if candidates:
            unique = np.unique(np.concatenate(candidates))
            low, high = unique // max(n, 1), unique % max(n, 1)
            kept, similarity = self.similar(low, high, threshold)
            result.low, result.high, result.similarity = low[kept], high[kept], similarity
        return result

    def _equal_set_groups(self) -> tuple[IntArray, IntArray]:
        """Names with the same trigram set (by a 64-bit hash of it; the exact count checks): their rows and a group
        number each. Names without trigrams are in none."""
        weights = np.random.default_rng(20261202).integers(1, 2**62, size=max(1, self.tokens_count), dtype=np.int64)
        summed = np.zeros(len(self.ids), np.int64)
        with np.errstate(over="ignore"):
            np.add.at(summed, self.rows, weights[self.ranked])
            hashes = self.sizes * np.int64(1_000_003) + summed
        named = np.flatnonzero(self.sizes > 0)
        _, group = np.unique(hashes[named], return_inverse=True)
        return named, np.asarray(group, dtype=np.int64).reshape(-1)


def in_prefix(position: IntArray, size: IntArray, threshold: float) -> npt.NDArray[np.bool_]:
    """Whether the trigram at `position` (rarest first) of a name with `size` trigrams is among its first
    `size − ⌈θ·size⌉ + 1` (rounded up by a hair: a longer prefix only finds more candidates)."""
    length = size - np.ceil(threshold * size - 1e-6).astype(np.int64) + 1
    return position < length


def _chunks(groups: IntArray, cost: IntArray, chunk: int) -> list[IntArray]:
    """The groups in runs of about `chunk` pairs each (a larger group alone)."""
    if not len(groups):
        return []
    cumulative = np.cumsum(cost[groups])
    run = cumulative // chunk
    bounds = np.flatnonzero(np.diff(run, prepend=-1))
    return np.split(groups, bounds[1:])


def name_set_from_load(row: Any) -> OrgNameSet:
    """From the row of detection's `name_index.LOAD` (the same packing, decoded by the same function)."""
    ids, _, rows, codes = name_index.decode_load(row)
    return OrgNameSet(row["epoch"], row["version"], ids, rows.astype(np.int64), codes.astype(np.int64))


@dataclass
class NameSets:
    """The orgs' name sets of one database, in this process, least recently used first."""

    orgs: OrderedDict[OrgId, OrgNameSet] = field(default_factory=OrderedDict)
    locks: dict[OrgId, asyncio.Lock] = field(default_factory=dict)

    def fresh(self, org_id: OrgId, epoch: uuid.UUID | None, version: int) -> OrgNameSet | None:
        names = self.orgs.get(org_id)
        return names if names is not None and names.epoch == epoch and names.version >= version else None

    def keep(self, org_id: OrgId, names: OrgNameSet) -> None:
        self.orgs[org_id] = names
        self.orgs.move_to_end(org_id)
        held = sum(n.size for n in self.orgs.values())
        for other in list(self.orgs):
            if held <= MAX_NAMES:
                break
            if other != org_id:
                held -= self.orgs.pop(other).size


_SETS: "weakref.WeakKeyDictionary[AsyncEngine, NameSets]" = weakref.WeakKeyDictionary()


def sets_for(session: AsyncSession) -> NameSets:
    """Held per engine, like detection's name indexes: one process serving one database shares them."""
    engine = session.bind
    if not isinstance(engine, AsyncEngine):
        raise TypeError("the session is not bound to an engine")
    return _SETS.setdefault(engine, NameSets())
