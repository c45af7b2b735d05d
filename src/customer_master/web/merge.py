"""Merging customers in the browser (API.md §12): the customers side by side, whose value each field takes,
a preview (the service's dry run), the merge, its result with an undo; and the note on a merged-away
customer's page that leads to its survivor.

Every role sees the customers side by side; INTEGRATOR and ADMIN choose, preview, merge and undo (API.md
§2). The rules are the merge service's, called as `merge/api.py` calls it; the screen only turns radio
buttons into a `MergeRequest`.
"""

import re
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from customer_master.auth.tenancy import Principal
from customer_master.customers.schemas import CustomerOut
from customer_master.customers.service import get_customer
from customer_master.deps import SessionDep
from customer_master.errors import AppError, Conflict, NotFound
from customer_master.history.context import Actor
from customer_master.merge import service
from customer_master.merge.schemas import MAX_MERGED, MergeRequest, MergeResult, PickField
from customer_master.web import customers
from customer_master.web.core import (
    CsrfChecked,
    WebRoute,
    errors_of,
    form_text,
    is_htmx,
    parse_uuid,
    redirect,
    render,
)
from customer_master.web.deps import WebUser, WebWriter
from customer_master.web.i18n import gettext_for

router = APIRouter(route_class=WebRoute)
PICK_FIELDS: tuple[PickField, ...] = get_args(PickField)
MAX_COLUMNS = MAX_MERGED + 1  # the survivor and the most a merge takes
# A chain of merges (A into B, B into C) is followed this far to the customer that lives on.
UUID_IN_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


@dataclass
class Choices:
    """What the radio buttons say: the survivor, and per field the customer whose value the result takes."""

    survivor: uuid.UUID
    picks: dict[PickField, uuid.UUID] = field(default_factory=dict)
    moved: bool = False  # the survivor is another than the screen showed

    def request(self, ids: list[uuid.UUID], *, dry_run: bool) -> MergeRequest:
        """The service's request: a field chosen from the survivor is not picked, so that the service fills a
        null of the survivor's from the others (API.md §12)."""
        return MergeRequest(
            survivor_id=self.survivor,
            merged_ids=[i for i in ids if i != self.survivor],
            pick={name: i for name, i in self.picks.items() if i != self.survivor},
            dry_run=dry_run,
        )


def id_in(text: str) -> uuid.UUID | None:
    """A customer id as typed, or inside a pasted address of its page (`…/customers/<id>`)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        match = UUID_IN_TEXT.search(text)
        return uuid.UUID(match.group(0)) if match else None


async def load_columns(
    request: Request, session: AsyncSession, principal: Principal, raw_ids: list[str]
) -> tuple[list[CustomerOut], list[str]]:
    """The customers to compare, in the order given (each once), and why any given id is not among them."""
    _ = gettext_for(request)
    found: list[CustomerOut] = []
    problems: list[str] = []
    for raw in raw_ids:
        text = raw.strip()
        if not text:
            continue
        customer_id = id_in(text)
        if customer_id is None:
            problems.append(_("“%(text)s” is not a customer id.") % {"text": text[:100]})
            continue
        if any(c.id == customer_id for c in found):
            continue
        if len(found) == MAX_COLUMNS:
            problems.append(_("At most %(num)d customers can be merged at once.") % {"num": MAX_COLUMNS})
            break
        try:
            found.append((await get_customer(session, principal.org_id, customer_id)).customer)
        except NotFound as exc:
            merged_into = exc.details.get("merged_into")
            survivor = await customers.live_customer(session, principal.org_id, merged_into) if merged_into else None
            if survivor is not None:
                message = _("Customer %(id)s was merged into %(name)s (%(survivor_id)s).")
                problems.append(message % {"id": customer_id, "name": survivor.name, "survivor_id": survivor.id})
            else:
                problems.append(_("There is no customer %(id)s.") % {"id": customer_id})
    return found, problems


def choices_from_form(form: FormData, columns: list[CustomerOut]) -> Choices:
    """The radio buttons as sent; one naming a customer that is not on the screen counts as the survivor."""
    ids = [c.id for c in columns]

    def chosen(name: str, default: uuid.UUID) -> uuid.UUID:
        value = id_in(form_text(form, name))
        return value if value in ids else default

    survivor = chosen("survivor", ids[0])
    picks = {name: chosen(f"pick.{name}", survivor) for name in PICK_FIELDS}
    previous = id_in(form_text(form, "previous_survivor"))
    if previous is None or previous == survivor:
        return Choices(survivor, picks)
    # Another survivor was chosen: the rows that took the old survivor's values take the new one's.
    return Choices(survivor, {name: survivor if i == previous else i for name, i in picks.items()}, moved=True)


def default_choices(columns: list[CustomerOut]) -> Choices:
    """The first customer survives and gives every field."""
    return Choices(columns[0].id, {name: columns[0].id for name in PICK_FIELDS})


def _ids_query(ids: list[uuid.UUID], **extra: str) -> str:
    return urlencode([("ids", str(i)) for i in ids] + list(extra.items()))


def _screen(
    request: Request,
    columns: list[CustomerOut],
    choices: Choices | None,
    problems: list[str],
    status: int = 200,
    **extra: Any,
) -> Response:
    ids = [c.id for c in columns]
    context = {
        "columns": columns,
        "ids": ids,
        "choices": choices or (default_choices(columns) if columns else None),
        "problems": problems,
        "remove_urls": {i: "/merge?" + _ids_query([o for o in ids if o != i]) for i in ids},
        **extra,
    }
    if is_htmx(request) and "preview" in extra:  # the preview; with the choices when the survivor moved
        if choices is not None and choices.moved:
            headers = {"HX-Retarget": "#merge-work", "HX-Reswap": "outerHTML"}
            return render(request, "merge/_work.html", context, status=status, headers=headers)
        return render(request, "merge/_preview.html", context, status=status)
    return render(request, "merge/screen.html", context, status=status)


def _messages(exc: AppError) -> list[str]:
    """The service's reasons, one line each (`merged_ids.0: customer … is merged into …`)."""
    return [f"{name}: {'; '.join(reasons)}" if name else "; ".join(reasons) for name, reasons in errors_of(exc).items()]


@router.get("/merge")
async def merge_screen(
    request: Request,
    session: SessionDep,
    principal: WebUser,
    ids: Annotated[list[str], Query(max_length=100)] = [],  # noqa: B006 (FastAPI copies the default)
    undone: str | None = None,
) -> Response:
    """The customers of `ids` side by side (every role); the choices for INTEGRATOR and ADMIN."""
    columns, problems = await load_columns(request, session, principal, ids[:MAX_COLUMNS])
    return _screen(request, columns, None, problems, undone=bool(undone))


async def _run(
    request: Request, session: AsyncSession, principal: Principal, *, dry_run: bool
) -> tuple[list[CustomerOut], Choices | None, list[str], MergeResult | None, int]:
    """The form's merge, run by the service (a dry run for the preview); refused: nothing written, and why."""
    form = await request.form()
    raw_ids = [value for value in form.getlist("ids")[:MAX_COLUMNS] if isinstance(value, str)]
    columns, problems = await load_columns(request, session, principal, raw_ids)
    if not columns:
        return columns, None, problems, None, 422
    choices = choices_from_form(form, columns)
    if problems:  # a customer changed under the screen: show it again rather than merge the rest
        return columns, choices, problems, None, 422
    if len(columns) < 2:
        _ = gettext_for(request)
        return columns, choices, [_("Add at least one more customer to merge.")], None, 422
    try:
        async with session.begin_nested():  # refused: nothing written, the screen again with the reasons
            result = await service.merge_customers(
                session,
                principal.org_id,
                choices.request([c.id for c in columns], dry_run=dry_run),
                actor=Actor.of(principal),
                request_id=request.state.request_id,
            )
    except AppError as exc:
        return columns, choices, _messages(exc), None, exc.status
    return columns, choices, [], result, 200


@router.post("/merge/preview", dependencies=[CsrfChecked])
async def preview_merge(request: Request, session: SessionDep, principal: WebWriter) -> Response:
    """The customer as the merge would leave it (nothing written), and the button that merges exactly that."""
    columns, choices, problems, result, status = await _run(request, session, principal, dry_run=True)
    return _screen(request, columns, choices, [], status, preview=result, preview_problems=problems)


@router.post("/merge", dependencies=[CsrfChecked])
async def merge(request: Request, session: SessionDep, principal: WebWriter) -> Response:
    columns, choices, problems, result, status = await _run(request, session, principal, dry_run=False)
    if result is None or result.merge_id is None:
        return _screen(request, columns, choices, [], status, preview=None, preview_problems=problems)
    query = urlencode({"survivor": str(result.customer.id), "merged": str(len(result.merged_ids))})
    return redirect(request, f"/merges/{result.merge_id}?{query}")


def _count(text: str | None) -> int:
    return int(text) if text and text.isdigit() and len(text) < 4 else 0


@router.get("/merges/{merge_id}")
async def merge_done(
    request: Request,
    merge_id: uuid.UUID,
    session: SessionDep,
    principal: WebUser,
    survivor: str = "",
    merged: str | None = None,
) -> Response:
    """After a merge: the survivor as it is now, and the undo. The merge's record stays with the service;
    the address names the survivor and the count for this page's message only (the undo checks the merge)."""
    document = await get_customer(session, principal.org_id, parse_uuid(survivor))
    context = {
        "merge_id": merge_id,
        "customer": document.customer,
        "merged": _count(merged),
    }
    return render(request, "merge/done.html", context)


@router.post("/merges/{merge_id}/undo", dependencies=[CsrfChecked])
async def undo_merge(request: Request, merge_id: uuid.UUID, session: SessionDep, principal: WebWriter) -> Response:
    """Every customer back as before; refused (409: the survivor changed since, or undone already): the
    service's reason on the survivor's result page."""
    try:
        async with session.begin_nested():
            result = await service.undo_merge(
                session, principal.org_id, merge_id, actor=Actor.of(principal), request_id=request.state.request_id
            )
    except Conflict as exc:
        try:
            survivor = await get_customer(session, principal.org_id, uuid.UUID(str(exc.details["existing_id"])))
        except NotFound:  # the survivor was deleted since: the error page says why
            raise exc from None
        context = {
            "merge_id": merge_id,
            "customer": survivor.customer,
            "conflict": exc.message,
        }
        return render(request, "merge/done.html", context, status=exc.status)
    return redirect(request, "/merge?" + _ids_query([c.id for c in result.customers], undone="1"))
