"""Webhooks (ADMIN): the org's endpoints; add one (its secret shown once), enable or disable it, rotate its
secret (shown once), delete it after a confirmation; its recent deliveries with their status codes, and
"send again from here" (a replay from just before that delivery's event).

The rules are the webhooks service's (`webhooks/service.py`), called as `webhooks/api.py` calls them.
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import Principal
from customer_master.deps import SessionDep
from customer_master.errors import AppError
from customer_master.web.core import (
    CsrfChecked,
    FieldErrors,
    ListPage,
    WebRoute,
    errors_of,
    form_text,
    parse_uuid,
    redirect,
    render,
    status_of,
)
from customer_master.web.deps import WebAdmin
from customer_master.web.i18n import gettext_for
from customer_master.webhooks import service
from customer_master.webhooks.schemas import WebhookCreate, WebhookPatch

router = APIRouter(route_class=WebRoute)
DELIVERIES_SHOWN = 25
ALL_TYPES = "all"
WEBHOOKS = ListPage("admin/webhooks.html", "webhooks", service.list_webhooks, defaults={"types": ALL_TYPES})


def parse_types(text: str) -> list[str] | None:
    """`customer.*, contact.deleted` → one type per item; empty or "all" → every type (None)."""
    text = text.strip()
    if not text or text.lower() == ALL_TYPES:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def field_errors(exc: AppError | ValidationError) -> FieldErrors:
    """The API's field errors, with an item's problem (`types.0`) beside the types input."""
    errors: FieldErrors = {}
    for field, reasons in errors_of(exc).items():
        errors.setdefault(field.split(".")[0], []).extend(reasons)
    return errors


@router.get("/admin/webhooks")
async def webhooks_page(
    request: Request, session: SessionDep, principal: WebAdmin, deleted: str | None = None
) -> Response:
    _ = gettext_for(request)
    message = _("The webhook was deleted.") if deleted else None
    return await WEBHOOKS.render(request, session, principal, message=message)


@router.post("/admin/webhooks", dependencies=[CsrfChecked])
async def create_webhook(request: Request, session: SessionDep, principal: WebAdmin) -> Response:
    """The secret is in this one response only (not stored in the page's URL, not cacheable)."""
    form = await request.form()
    values = {name: form_text(form, name).strip() for name in ("url", "types", "description")}
    try:
        data = WebhookCreate.model_validate(
            {"url": values["url"], "types": parse_types(values["types"]), "description": values["description"] or None}
        )
        created = await service.create_webhook(session, principal.org_id, data)
    except (ValidationError, AppError) as exc:
        return await WEBHOOKS.render(request, session, principal, status_of(exc), field_errors(exc), values=values)
    return await WEBHOOKS.render(request, session, principal, created=created)


async def _detail_page(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    webhook_id: uuid.UUID,
    cursor: str | None = None,
    **extra: Any,
) -> Response:
    webhook = await service.get_webhook(session, principal.org_id, webhook_id)
    deliveries, next_cursor = await service.list_deliveries(
        session, principal.org_id, webhook_id, limit=DELIVERIES_SHOWN, cursor=cursor
    )
    context = {
        "webhook": webhook,
        "deliveries": deliveries,
        "next_cursor": next_cursor,
        "older": cursor is not None,
        **extra,
    }
    return render(request, "admin/webhook.html", context)


@router.get("/admin/webhooks/{webhook_id}")
async def webhook_page(
    request: Request,
    webhook_id: uuid.UUID,
    session: SessionDep,
    principal: WebAdmin,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    return await _detail_page(request, session, principal, webhook_id, cursor)


@router.post("/admin/webhooks/{webhook_id}/status", dependencies=[CsrfChecked])
async def change_status(request: Request, webhook_id: uuid.UUID, session: SessionDep, principal: WebAdmin) -> Response:
    """ACTIVE (also a FAILING endpoint: it resumes where it stopped) or DISABLED."""
    form = await request.form()
    _ = gettext_for(request)
    try:
        patch = WebhookPatch.model_validate({"status": form_text(form, "status")})
    except ValidationError as exc:
        return await _detail_page(request, session, principal, webhook_id, errors=field_errors(exc))
    webhook = await service.update_webhook(session, principal.org_id, webhook_id, patch)
    if webhook.status == "ACTIVE":
        message = _("The webhook is active: it receives every event it has not had yet, in order.")
    else:
        message = _("The webhook is disabled: nothing is sent until it is enabled again; no event is lost.")
    return await _detail_page(request, session, principal, webhook_id, message=message)


@router.post("/admin/webhooks/{webhook_id}/rotate-secret", dependencies=[CsrfChecked])
async def rotate_secret(request: Request, webhook_id: uuid.UUID, session: SessionDep, principal: WebAdmin) -> Response:
    """The new secret is in this one response only."""
    secret = await service.rotate_secret(session, principal.org_id, webhook_id)
    return await _detail_page(request, session, principal, webhook_id, new_secret=secret.secret)


@router.post("/admin/webhooks/{webhook_id}/replay", dependencies=[CsrfChecked])
async def send_again(request: Request, webhook_id: uuid.UUID, session: SessionDep, principal: WebAdmin) -> Response:
    """Send again from one delivery's event: a replay after the sequence just before that event."""
    form = await request.form()
    delivery_id = parse_uuid(form_text(form, "delivery_id"))
    sequence = await service.delivery_sequence(session, principal.org_id, webhook_id, delivery_id)
    await service.replay(session, principal.org_id, webhook_id, str(sequence - 1))
    _ = gettext_for(request)
    message = _("That event and every later one will be sent again, in order, before new ones.")
    return await _detail_page(request, session, principal, webhook_id, message=message)


@router.get("/admin/webhooks/{webhook_id}/delete")
async def delete_webhook_page(
    request: Request, webhook_id: uuid.UUID, session: SessionDep, principal: WebAdmin
) -> Response:
    webhook = await service.get_webhook(session, principal.org_id, webhook_id)
    return render(request, "admin/webhook_delete.html", {"webhook": webhook})


@router.post("/admin/webhooks/{webhook_id}/delete", dependencies=[CsrfChecked])
async def delete_webhook(request: Request, webhook_id: uuid.UUID, session: SessionDep, principal: WebAdmin) -> Response:
    await service.delete_webhook(session, principal.org_id, webhook_id)
    return redirect(request, "/admin/webhooks?deleted=1")
