"""Possible duplicates (API.md §12): pairs of customers that may be the same, best first, page by page; a pair
marked "not a duplicate" is not listed again, and "Merge…" opens the merge screen with the two.

Every role sees the pairs; INTEGRATOR and ADMIN dismiss them (API.md §2). The pairs and the dismissal are the
duplicates service's, called as `duplicates/api.py` calls it.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import Principal
from customer_master.deps import SessionDep
from customer_master.duplicates import service
from customer_master.duplicates.schemas import DismissRequest
from customer_master.errors import ValidationFailed
from customer_master.web.core import CsrfChecked, WebRoute, is_htmx, redirect, render
from customer_master.web.deps import WebUser, WebWriter

router = APIRouter(route_class=WebRoute)
PAGE_SIZE = 25


async def _page(session: AsyncSession, principal: Principal, request: Request, cursor: str | None) -> dict[str, Any]:
    items, next_cursor = await service.list_duplicates(
        session, principal.org_id, limit=PAGE_SIZE, cursor=cursor or None
    )
    return {"items": items, "next_cursor": next_cursor, "first_page": not cursor}


@router.get("/duplicates")
async def duplicates_page(
    request: Request,
    session: SessionDep,
    principal: WebUser,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    dismissed: str | None = None,
) -> Response:
    context = await _page(session, principal, request, cursor)
    return render(request, "duplicates/list.html", {**context, "dismissed": bool(dismissed)})


@router.get("/duplicates/rows")
async def duplicate_rows(
    request: Request,
    session: SessionDep,
    principal: WebUser,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """The next rows ("more", htmx)."""
    return render(request, "duplicates/_rows.html", await _page(session, principal, request, cursor))


@router.post("/duplicates/dismiss", dependencies=[CsrfChecked])
async def dismiss_pair(request: Request, session: SessionDep, principal: WebWriter) -> Response:
    """The pair is not listed again; htmx removes its row (and says so), a plain form goes back to the list."""
    form = await request.form()
    try:
        body = DismissRequest.model_validate({"customer_ids": form.getlist("customer_ids")})
    except ValidationError as exc:
        raise ValidationFailed.of(exc) from None
    await service.dismiss_pair(session, principal.org_id, body.customer_ids)
    if not is_htmx(request):
        return redirect(request, "/duplicates?dismissed=1")
    return render(request, "duplicates/_dismissed.html")
