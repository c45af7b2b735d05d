"""Merge and undo routes (API.md §12): parse, call the service, shape the response."""

import uuid

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException

from customer_master.deps import SessionDep, Writer
from customer_master.history.context import Actor
from customer_master.merge import service
from customer_master.merge.schemas import MergeRequest, MergeResult, UndoResult
from customer_master.openapi import error_responses

router = APIRouter(prefix="/api/v1", tags=["merge"])


@router.post("/customers/merge", response_model=MergeResult, responses=error_responses(404))
async def merge_customers(request: Request, body: MergeRequest, session: SessionDep, principal: Writer) -> MergeResult:
    """Merge customers into the survivor (or, with `dry_run`, show the result without writing)."""
    return await service.merge_customers(
        session, principal.org_id, body, actor=Actor.of(principal), request_id=request.state.request_id
    )


@router.api_route(
    "/customers/merge", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False, name="method_not_allowed"
)
async def merge_other_methods() -> None:
    """Without this, `GET /customers/merge` would reach `GET /customers/{id}` and fail on the id."""
    raise HTTPException(405, headers={"Allow": "POST"})


@router.post("/merges/{merge_id}/undo", response_model=UndoResult, responses=error_responses(404, 409))
async def undo_merge(request: Request, merge_id: uuid.UUID, session: SessionDep, principal: Writer) -> UndoResult:
    """Every customer and contact of the merge back as it was, unless the survivor changed since (409)."""
    return await service.undo_merge(
        session, principal.org_id, merge_id, actor=Actor.of(principal), request_id=request.state.request_id
    )
