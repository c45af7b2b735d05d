"""History and event feed routes (API.md §10, §11)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from customer_master import pagination
from customer_master.config import get_settings
from customer_master.deps import AnyRole, SessionDep, Writer
from customer_master.history import service
from customer_master.history.schemas import EventPage, HistoryEntry
from customer_master.history.service import EVENT_TYPES_PATTERN, SEQUENCE_CURSOR_PATTERN
from customer_master.openapi import error_responses
from customer_master.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["history and events"])


@router.get(
    "/customers/{id}/history",
    response_model=Page[HistoryEntry],
    responses=error_responses(404),
    summary="A customer's change history, newest first",
)
async def customer_history(
    session: SessionDep,
    principal: AnyRole,
    id: uuid.UUID,
    limit: pagination.PageLimit = 50,
    cursor: Annotated[
        str | None,
        Query(
            pattern=SEQUENCE_CURSOR_PATTERN,
            description="Opaque: the `next_cursor` of the previous page (digits), passed back unchanged",
        ),
    ] = None,
) -> dict[str, object]:
    entries, next_cursor = await service.customer_history(session, principal.org_id, id, limit=limit, cursor=cursor)
    return {"items": entries, "next_cursor": next_cursor}


@router.get(
    "/events",
    response_model=EventPage,
    responses=error_responses(410),
    summary="The org's event feed in commit order (long polling with `wait`)",
)
async def list_events(
    request: Request,
    session: SessionDep,
    principal: Writer,
    after: Annotated[
        str | None,
        Query(
            pattern=f"^(now|{SEQUENCE_CURSOR_PATTERN[1:-1]})$",
            description="A `next_cursor` (or an event's `sequence`): events after it; `now`: the current end; "
            "absent: the oldest event kept",
        ),
    ] = None,
    limit: pagination.PageLimit = 50,
    types: Annotated[
        str | None,
        Query(
            max_length=500,
            # Declared, and checked by `parse_types` (its 422 lists the known types).
            json_schema_extra={"pattern": EVENT_TYPES_PATTERN},
            description="Comma-separated types or `prefix.*`, e.g. `customer.*,contact.deleted`",
        ),
    ] = None,
    wait: Annotated[float, Query(ge=0, le=60, description="Seconds to hold an empty answer open")] = 0,
) -> dict[str, object]:
    await session.commit()  # the caller is known: no connection is held while the feed waits
    events, next_cursor = await service.read_events(
        request.app.state.db,
        request.app.state.feed_listener,
        principal.org_id,
        after=after,
        limit=limit,
        types=types,
        wait_s=wait,
        retention_s=get_settings().event_retention_s,
    )
    return {"items": events, "next_cursor": next_cursor}
