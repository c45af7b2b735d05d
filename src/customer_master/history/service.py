"""History of a customer and the org's event feed (API.md §10, §11): paging, cursors, waiting."""

import asyncio
import json
import re
import uuid
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import OrgId
from customer_master.db.session import Database, driver_connection
from customer_master.errors import Gone, NotFound, ValidationFailed
from customer_master.history import repository
from customer_master.history.listener import FeedListener
from customer_master.history.schemas import ENTRY_TYPES, ChangeData, Event, HistoryEntry

FEED_NOW = "now"


SEQUENCE_CURSOR_PATTERN = "^[0-9]{1,18}$"  # what `parse_sequence_cursor` takes, for the OpenAPI document


def parse_sequence_cursor(cursor: str, field: str) -> int:
    """History and feed cursors are sequences (an event's `sequence` is a cursor too)."""
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 18:
        raise ValidationFailed.one(field, "not a cursor this API returned")
    return int(cursor)


# `types=` of the feed and a webhook's `types`: exact types, or `prefix.*` for a prefix of some type up to a dot.
TYPE_PREFIXES: tuple[str, ...] = tuple(
    dict.fromkeys(name[: i + 1] + "*" for name in ENTRY_TYPES for i, char in enumerate(name) if char == ".")
)
_ONE_TYPE = "|".join(re.escape(name) for name in (*ENTRY_TYPES, *TYPE_PREFIXES))
EVENT_TYPE_PATTERN = f"^({_ONE_TYPE})$"  # one item (a webhook's `types`)
EVENT_TYPES_PATTERN = f"^ *({_ONE_TYPE}) *(, *({_ONE_TYPE}) *)*$"  # the feed's comma-separated `types=`


def parse_types(types: str | None) -> tuple[list[str], list[str]] | None:
    """`customer.*,contact.deleted` → exact types and LIKE patterns; None for every type; unknown → 422.

    Exactly what `EVENT_TYPES_PATTERN` matches (spaces around an item allowed) is taken."""
    if types is None:
        return None
    exact: list[str] = []
    prefixes: list[str] = []
    unknown = []
    for name in (part.strip(" ") for part in types.split(",")):
        if name in TYPE_PREFIXES:
            prefixes.append(name[:-1] + "%")
        elif name in ENTRY_TYPES:
            exact.append(name)
        else:
            unknown.append(name)
    if unknown or not (exact or prefixes):
        known = ", ".join(ENTRY_TYPES)
        raise ValidationFailed.one("types", f"unknown event type {', '.join(unknown) or '(none)'}; known: {known}")
    return exact, prefixes


# Fields stored as one JSON object and listed one key each (`billing_address.city`, `metadata.group`).
OBJECT_FIELDS = frozenset({"billing_address", "shipping_address", "metadata"})


def _flat(fields: dict[str, Any] | None) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for field, value in (fields or {}).items():
        if field in OBJECT_FIELDS:
            if isinstance(value, dict):
                flat.update((f"{field}.{key}", inner) for key, inner in value.items())
        else:
            flat[field] = value
    return flat


# Fields listed whole; the snapshot stores an empty list as null (migration 0009), shown as [].
LIST_FIELDS = frozenset({"erp_aliases"})


def _value(flat: dict[str, Any], field: str) -> Any:
    value = flat.get(field)
    return [] if value is None and field in LIST_FIELDS else value


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def changes_between(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """API.md §10 `changes`: each field whose value differs, `from` → `to` (null where there is none), so a
    created object lists its non-null fields and a deleted one all it had. JSON-equal, not Python-equal:
    `true` is not `1`."""
    old, new = _flat(before), _flat(after)
    fields = [*old, *(field for field in new if field not in old)]
    return {
        field: {"from": _value(old, field), "to": _value(new, field)}
        for field in fields
        if _json(_value(old, field)) != _json(_value(new, field))
    }


def _change_data(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "customer_id": row["customer_id"],
        "contact_id": row["contact_id"],
        "actor": json.loads(row["actor"]),
        "source": row["source"],
        "request_id": row["request_id"],
        "import_id": row["import_id"],
        "merge_id": row["merge_id"],
        "changes": changes_between(
            json.loads(row["before"]) if row["before"] else None, json.loads(row["after"]) if row["after"] else None
        ),
    }


def _entry(row: asyncpg.Record) -> HistoryEntry:
    return HistoryEntry(
        id=row["id"], sequence=row["sequence"], type=row["type"], occurred_at=row["occurred_at"], **_change_data(row)
    )


def _event(org_id: OrgId, row: asyncpg.Record) -> Event:
    return Event(
        id=row["id"],
        sequence=row["sequence"],
        type=row["type"],
        occurred_at=row["occurred_at"],
        org_id=org_id,
        data=ChangeData(**_change_data(row)),
    )


async def customer_history(
    session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[HistoryEntry], str | None]:
    """Newest first; also for a customer deleted or merged away; 404 only for an id the org never had."""
    conn = await driver_connection(session)
    before = parse_sequence_cursor(cursor, "cursor") if cursor else None
    rows = await repository.customer_history(conn, org_id, customer_id, before=before, limit=limit + 1)
    if not rows and before is None and not await repository.customer_ever_existed(conn, org_id, customer_id):
        raise NotFound("No such customer")
    entries = [_entry(row) for row in rows[:limit]]
    return entries, str(entries[-1].sequence) if len(rows) > limit else None


async def _start_of_feed(conn: asyncpg.Connection, org_id: OrgId, after: str | None, retention_s: int) -> int:
    """The sequence to read after: the cursor given (410 when the feed no longer keeps what follows it),
    the current end for `now`, else the oldest event kept."""
    if after == FEED_NOW:
        return await repository.feed_end(conn, org_id)
    oldest_kept = await repository.feed_start(conn, org_id, retention_s)
    if after is None:
        return oldest_kept
    sequence = parse_sequence_cursor(after, "after")
    if sequence < oldest_kept:
        raise Gone(f"Events before sequence {oldest_kept + 1} are no longer kept; start again without `after`")
    if sequence > await repository.feed_end(conn, org_id):
        raise ValidationFailed.one("after", "not a cursor this API returned (beyond the end of the feed)")
    return sequence


async def read_events(
    database: Database,
    listener: FeedListener,
    org_id: OrgId,
    *,
    after: str | None,
    limit: int,
    types: str | None,
    wait_s: float,
    retention_s: int,
) -> tuple[list[Event], str]:
    """One page of the feed after the cursor; an empty page waits up to `wait_s` for a matching event.

    Each read is a transaction of its own: no connection is held while waiting.
    """
    filters = parse_types(types)
    exact, prefixes = filters if filters is not None else (None, None)
    async with database.transaction() as session:
        conn = await driver_connection(session)
        position = await _start_of_feed(conn, org_id, after, retention_s)
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        subscription: AbstractAsyncContextManager[asyncio.Event | None] = (
            listener.subscription(org_id) if wait_s > 0 else nullcontext()
        )
        async with subscription as woken:
            async with database.transaction() as session:
                conn = await driver_connection(session)
                rows, end = await repository.feed_page(
                    conn, org_id, after=position, types=exact, prefixes=prefixes, limit=limit
                )
            events = [_event(org_id, row) for row in rows]
            if len(events) == limit:
                return events, str(events[-1].sequence)
            # A short page saw the whole feed up to its end: what matches later comes after the end.
            position = max(position, end)
            remaining = deadline - asyncio.get_running_loop().time()
            if events or remaining <= 0 or woken is None:
                return events, str(position)
            try:
                await asyncio.wait_for(woken.wait(), remaining)
            except TimeoutError:
                return events, str(position)


async def events_after(
    conn: asyncpg.Connection, org_id: OrgId, after: int, types: list[str] | None, *, limit: int
) -> tuple[list[Event], int]:
    """Up to `limit` events after sequence `after` whose type matches `types` (the rule of `types=`; None: all),
    in feed order, and the feed's end in the same snapshot (for the webhook worker)."""
    filters = parse_types(",".join(types)) if types is not None else None
    exact, prefixes = filters if filters is not None else (None, None)
    rows, end = await repository.feed_page(conn, org_id, after=after, types=exact, prefixes=prefixes, limit=limit)
    return [_event(org_id, row) for row in rows], end
