"""Possible duplicates (API.md §12): pairs of an org's live customers, scored like detection, paged; dismissals.

A pair's signals are detection's (§7), between two customers instead of a request and a customer:
`SAME_EMAIL` (a contact e-mail both have, 0.95), `SAME_DOMAIN` (a contact mail domain both have that is not a
public mail provider's, 0.75, not when they share an e-mail) and `SIMILAR_NAME` (trigram similarity of the
company keys ≥ 0.5, scored as S5), combined by `scoring.combine`.

How a page is made, exactly and without comparing every pair:

- Pairs with a shared e-mail or domain come from the values that several customers share (one statement),
  each with its name similarity. An e-mail or domain that more than `MAX_SHARING_CUSTOMERS` customers share
  (a marketplace's relay address, a service provider's domain) is no signal: it says nothing about any two of
  them, and would make a quadratic number of pairs.
- Pairs with only a similar name score at most 0.85, so they are looked for only when the page reaches
  below that: first the pairs that score 0.85 (similarity ≥ 0.75), then down to `min_score` — the lower the
  threshold, the more name pairs there are to find (`names.py`, which keeps them per name version).
- Pairs are ordered by score, then by the two ids; the cursor is the last pair's score and ids.
"""

import asyncio
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master import pagination
from customer_master.auth.tenancy import OrgId
from customer_master.customers.service import customer_not_found
from customer_master.detection import scoring, signals
from customer_master.detection.settings import detection_settings
from customer_master.duplicates import names, repository
from customer_master.duplicates.names import FloatArray, IntArray, OrgNameSet
from customer_master.duplicates.schemas import DuplicatePair, PairCustomer, Reason
from customer_master.pagination import decode_cursor, encode_cursor

MIN_SIMILARITY = 0.5
MAX_SHARING_CUSTOMERS = 1000
SCALE = 10_000  # scores have 4 decimals: held as integers of 1/10,000
NAME_ONLY_MAX = round(signals.S5_MAX * SCALE)  # a pair with nothing but a similar name scores at most this

EMAIL, DOMAIN, NAME_ONLY = 1, 2, 0


@dataclass
class Pairs:
    """Candidate pairs as rows of the org's name set (`low < high`): what they share and their score."""

    low: IntArray
    high: IntArray
    kind: IntArray  # EMAIL, DOMAIN or NAME_ONLY
    value: IntArray  # the shared e-mail's or domain's index into `values`, −1 for none
    similarity: FloatArray  # NaN below MIN_SIMILARITY
    score: IntArray

    def __len__(self) -> int:
        return len(self.low)

    def take(self, index: IntArray) -> "Pairs":
        return Pairs(*(getattr(self, f)[index] for f in ("low", "high", "kind", "value", "similarity", "score")))


def _empty() -> Pairs:
    i = np.empty(0, np.int64)
    return Pairs(i, i, i, i, np.empty(0, np.float32), i)


# --- scores --------------------------------------------------------------------------------------


def _scores(kind: IntArray, similarity: FloatArray) -> IntArray:
    """Each pair's score (× 10,000) by detection's noisy-or, computed once per distinct kind and similarity."""
    scores = np.zeros(len(kind), np.int64)
    fixed = {EMAIL: [signals.S1_EMAIL], DOMAIN: [signals.S2_DOMAIN], NAME_ONLY: []}
    for k, base in fixed.items():
        mask = kind == k
        if not mask.any():
            continue
        distinct, inverse = np.unique(np.nan_to_num(similarity[mask], nan=-1.0), return_inverse=True)
        combined = [
            scoring.combine([*base, *([signals.name_score(float(s))] if s >= 0 else [])]) for s in distinct.tolist()
        ]
        scores[mask] = np.rint(np.array(combined) * SCALE).astype(np.int64)[inverse.reshape(-1)]
    return scores


def score_floor(min_score: float) -> int:
    """The lowest listed score × 10,000 (scores have 4 decimals: `min_score` 0.80005 lists 0.8001 and up)."""
    return math.ceil(Decimal(repr(min_score)) * SCALE)


def name_threshold(score: int) -> float:
    """A similarity at or below the least that scores `score` (× 10,000) as S5 (`round(0.40 + 0.60·sim, 4)`)."""
    least = (score / SCALE - 0.00005 - signals.S5_BASE) / signals.S5_FACTOR
    return max(MIN_SIMILARITY, least - 1e-6)


# --- candidate pairs -----------------------------------------------------------------------------


def contact_pairs(name_set: OrgNameSet, shared: Sequence[Any]) -> tuple[Pairs, list[str]]:
    """Every pair of live customers in a group of `repository.shared_contact_values`, with the least shared
    e-mail, else the least shared domain, and the name similarity."""
    values = sorted({row["value"] for row in shared})
    if not shared:
        return _empty(), values
    value_rank = {value: index for index, value in enumerate(values)}
    members = [customer for row in shared for customer in row["customers"]]
    group = np.repeat(np.arange(len(shared)), [len(row["customers"]) for row in shared])
    rows = name_set.rows_of(members)
    live = rows >= 0  # one deleted or merged away since the name set was read is in no pair
    group, rows = group[live], rows[live]
    order = np.lexsort((rows, group))
    group, rows = group[order], rows[order]
    once = np.ones(len(rows), dtype=bool)  # a customer with two contacts on one domain is one member
    once[1:] = (group[1:] != group[:-1]) | (rows[1:] != rows[:-1])
    group, rows = group[once], rows[once]
    counts = np.bincount(group, minlength=len(shared))
    counts[counts > MAX_SHARING_CUSTOMERS] = 0  # no signal (see the module's note)
    kept = counts[group] > 0
    group, rows = group[kept], rows[kept]
    first, second = names.ragged_pairs(np.cumsum(counts) - counts, counts)
    n = name_set.size
    key = rows[first] * n + rows[second]
    pair_group = group[first]
    kind = np.array([EMAIL if row["kind"] == "e" else DOMAIN for row in shared], np.int64)[pair_group]
    rank = np.array([value_rank[row["value"]] for row in shared], np.int64)[pair_group]
    # Per pair its best reason: an e-mail before a domain, the least value of that kind.
    order = np.lexsort((rank, kind, key))
    key, kind, rank = key[order], kind[order], rank[order]
    best = np.flatnonzero(np.diff(key, prepend=-1))
    key, kind, rank = key[best], kind[best], rank[best]
    low, high = key // n, key % n
    similarity = np.full(len(key), np.nan, np.float32)
    similar, sims = name_set.similar(low, high, MIN_SIMILARITY)
    similarity[similar] = sims
    return Pairs(low, high, kind, rank, similarity, _scores(kind, similarity)), values


def name_only_pairs(name_set: OrgNameSet, threshold: float, contact: Pairs) -> Pairs:
    """The pairs at least `threshold` similar that share no e-mail or domain."""
    found = name_set.pairs(threshold)
    n = name_set.size
    alone = ~np.isin(found.low * n + found.high, contact.low * n + contact.high)
    low, high, similarity = found.low[alone], found.high[alone], found.similarity[alone]
    kind = np.full(len(low), NAME_ONLY, np.int64)
    return Pairs(low, high, kind, np.full(len(low), -1, np.int64), similarity, _scores(kind, similarity))


def _concat(a: Pairs, b: Pairs) -> Pairs:
    return Pairs(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in a.__dataclass_fields__))


# --- paging --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class After:
    """A cursor: the last listed pair's score (× 10,000) and ids."""

    score: int
    low: uuid.UUID
    high: uuid.UUID


# Every string of this shape is a position (a score above 1 lies before every pair).
CURSOR_PATTERN = pagination.keyset_cursor_pattern(rf"[0-9]{{1,5}}\|{pagination.UUID_PATTERN}")
CURSOR_MAX_LENGTH = 36 + 1 + 5 + 1 + 36


def _parse_key(key: str) -> tuple[int, uuid.UUID]:
    score, _, low = key.partition("|")
    if not score.isascii() or not score.isdigit():
        raise ValueError
    return int(score), uuid.UUID(low)


def parse_cursor(cursor: str) -> After:
    (score, low), high = decode_cursor(cursor, _parse_key)
    return After(score, low, high)


def cursor_of(score: int, low: uuid.UUID, high: uuid.UUID) -> str:
    return encode_cursor(f"{score}|{low}", high)


def _sort_position(name_set: OrgNameSet, customer_id: uuid.UUID) -> int:
    """Where an id sorts among the rows ×2 (a row r is at 2r; an id that is no row, between two rows)."""
    at, present = name_set.position(customer_id)
    return 2 * at if present else 2 * at - 1


def _page(name_set: OrgNameSet, pairs: Pairs, floor: int, after: After | None, count: int) -> Pairs:
    """The first `count` pairs scoring at least `floor` after the cursor, in order."""
    listed = pairs.score >= floor
    if after is not None:
        low, high = 2 * pairs.low, 2 * pairs.high
        after_low, after_high = _sort_position(name_set, after.low), _sort_position(name_set, after.high)
        later_ids = (low > after_low) | ((low == after_low) & (high > after_high))
        listed &= (pairs.score < after.score) | ((pairs.score == after.score) & later_ids)
    chosen = pairs.take(np.flatnonzero(listed))
    order = np.lexsort((chosen.high, chosen.low, -chosen.score))[:count]
    return chosen.take(order)


def _without(pairs: Pairs, n: int, dismissed: IntArray) -> Pairs:
    return pairs.take(np.flatnonzero(~np.isin(pairs.low * n + pairs.high, dismissed)))


# --- the service ---------------------------------------------------------------------------------


async def current_names(session: AsyncSession, org_id: OrgId) -> OrgNameSet:
    """The org's live customers' names at the current name version (loaded when it moved)."""
    sets = names.sets_for(session)
    version, epoch = await repository.name_version(session, org_id)
    found = sets.fresh(org_id, epoch, version)
    if found is None:
        async with sets.locks.setdefault(org_id, asyncio.Lock()):
            found = sets.fresh(org_id, epoch, version)  # another request may have loaded it meanwhile
            if found is None:
                found = names.name_set_from_load(await repository.load_names(session, org_id))
                sets.keep(org_id, found)
    return found


def _dismissed_keys(name_set: OrgNameSet, dismissed: list[tuple[uuid.UUID, uuid.UUID]]) -> IntArray:
    if not dismissed:
        return np.empty(0, np.int64)
    low = name_set.rows_of([pair[0] for pair in dismissed])
    high = name_set.rows_of([pair[1] for pair in dismissed])
    both = (low >= 0) & (high >= 0)
    return low[both] * name_set.size + high[both]


async def candidate_pool(session: AsyncSession, org_id: OrgId) -> tuple[OrgNameSet, Pairs, list[str], IntArray]:
    """The name set, the pairs with a shared e-mail or domain, their values, and the dismissed pairs' keys.

    Contacts are read before the names: a customer deleted or merged away in between is then missing from the
    names and in no pair, as it should be."""
    settings = await detection_settings(session, org_id)
    public = sorted(signals.PUBLIC_MAIL_DOMAINS | set(settings.public_domains_extra))
    shared = await repository.shared_contact_values(session, org_id, public)
    dismissed = await repository.dismissed_pairs(session, org_id)
    name_set = await current_names(session, org_id)
    contact, values = contact_pairs(name_set, shared)
    return name_set, contact, values, _dismissed_keys(name_set, dismissed)


async def list_duplicates(
    session: AsyncSession, org_id: OrgId, *, min_score: float = 0.8, limit: int = 50, cursor: str | None = None
) -> tuple[list[DuplicatePair], str | None]:
    """One page of pairs, best first; the cursor continues after its last pair."""
    after = parse_cursor(cursor) if cursor else None
    floor = score_floor(min_score)
    name_set, contact, values, dismissed = await candidate_pool(session, org_id)
    n = name_set.size
    pool = _without(contact, n, dismissed)
    # Name-only pairs by levels: none (complete when the page stays above 0.85), those scoring 0.85, all.
    levels = [level for level in (NAME_ONLY_MAX, floor) if level <= NAME_ONLY_MAX]
    page = _page(name_set, pool, floor, after, limit + 1)
    complete_above = NAME_ONLY_MAX + 1
    for level in dict.fromkeys(levels):
        if len(page) == limit + 1 and page.score[-1] >= complete_above:
            break
        found = _without(name_only_pairs(name_set, name_threshold(level), contact), n, dismissed)
        page = _page(name_set, _concat(pool, found), floor, after, limit + 1)
        complete_above = level
    return await _shape(session, org_id, name_set, page, values, limit)


async def _shape(
    session: AsyncSession, org_id: OrgId, name_set: OrgNameSet, page: Pairs, values: list[str], limit: int
) -> tuple[list[DuplicatePair], str | None]:
    rows = zip(page.low.tolist(), page.high.tolist(), strict=True)
    ids = [(name_set.customer_id(low), name_set.customer_id(high)) for low, high in rows]
    customers = await repository.customers_by_id(session, org_id, [i for pair in ids for i in pair])
    items: list[DuplicatePair] = []
    for index, (low, high) in enumerate(ids[:limit]):
        if low not in customers or high not in customers:
            continue  # deleted or merged away a moment ago
        reasons: list[Reason] = []
        kind = int(page.kind[index])
        if kind == EMAIL:
            reasons.append(Reason(signal="SAME_EMAIL", value=values[int(page.value[index])]))
        elif kind == DOMAIN:
            reasons.append(Reason(signal="SAME_DOMAIN", value=values[int(page.value[index])]))
        similarity = float(page.similarity[index])
        if not math.isnan(similarity):
            reasons.append(Reason(signal="SIMILAR_NAME", value=f"{round(similarity, 4)}"))
        items.append(
            DuplicatePair(
                customers=[_customer(customers[low]), _customer(customers[high])],
                score=int(page.score[index]) / SCALE,
                reasons=reasons,
            )
        )
    next_cursor = None
    if len(page) > limit:
        last = limit - 1
        next_cursor = cursor_of(int(page.score[last]), *ids[last])
    return items, next_cursor


def _customer(row: Any) -> PairCustomer:
    return PairCustomer(id=row["id"], name=row["name"], erp_customer_number=row["erp_customer_number"])


async def dismiss_pair(session: AsyncSession, org_id: OrgId, customer_ids: Sequence[uuid.UUID]) -> None:
    """The two customers are not the same company: their pair is never listed again (dismissing twice is fine)."""
    found = await repository.lock_customers(session, org_id, customer_ids)
    for customer_id in customer_ids:
        row = found.get(customer_id)
        if row is None or row.merged_into is not None:
            raise customer_not_found(row.merged_into if row is not None else None)
    low, high = sorted(customer_ids)  # as PostgreSQL orders uuids: byte by byte
    await repository.insert_dismissal(session, org_id, low, high)
