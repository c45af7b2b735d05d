"""Duplicate pairs and their dismissal (API.md §12): parse, call the service, shape the response."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from customer_master import pagination
from customer_master.deps import AnyRole, SessionDep, Writer
from customer_master.duplicates import service
from customer_master.duplicates.schemas import DismissRequest, DuplicatePair
from customer_master.openapi import error_responses
from customer_master.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["duplicates"])


@router.get("/duplicates", response_model=Page[DuplicatePair], summary="Pairs of customers that may be one company")
async def list_duplicates(
    session: SessionDep,
    principal: AnyRole,
    min_score: Annotated[
        float, Query(ge=0, le=1, allow_inf_nan=False, description="List the pairs scoring at least this")
    ] = 0.8,
    limit: pagination.PageLimit = 50,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=service.CURSOR_MAX_LENGTH,
            pattern=service.CURSOR_PATTERN,
            description=pagination.KEYSET_CURSOR_DESCRIPTION,
        ),
    ] = None,
) -> Response:
    items, next_cursor = await service.list_duplicates(
        session, principal.org_id, min_score=min_score, limit=limit, cursor=cursor
    )
    page = Page[DuplicatePair](items=items, next_cursor=next_cursor)
    return Response(page.model_dump_json(), media_type="application/json")


@router.post(
    "/duplicates/dismiss",
    status_code=204,
    responses=error_responses(404),
    summary="Two customers are not the same company: never list their pair again",
)
async def dismiss_duplicate(body: DismissRequest, session: SessionDep, principal: Writer) -> Response:
    await service.dismiss_pair(session, principal.org_id, body.customer_ids)
    return Response(status_code=204)
