"""Customer pages: the searchable list, one customer (edit in place, contacts), new customer, delete.

Writes go through `customers.service` with the same schemas as the API, so the messages beside the
inputs are the API's own (`billing_address.country` → "not an ISO 3166-1 alpha-2 country code: …").
"""

import json
import uuid
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from customer_master.auth.tenancy import OrgId, Principal
from customer_master.customers import service
from customer_master.customers.repository import CustomerFilter
from customer_master.customers.schemas import (
    ADDRESS_FIELDS,
    ContactIn,
    ContactOut,
    ContactPatch,
    CustomerCreate,
    CustomerFields,
    CustomerOut,
    CustomerPatch,
)
from customer_master.deps import SessionDep
from customer_master.errors import AppError, Conflict, NotFound
from customer_master.history import service as history_service
from customer_master.merge_patch import merge_patch_between
from customer_master.web.core import (
    CsrfChecked,
    FieldErrors,
    WebRoute,
    add_error,
    errors_of,
    form_text,
    is_htmx,
    redirect,
    render,
)
from customer_master.web.deps import WebAdmin, WebUser, WebWriter
from customer_master.web.i18n import gettext_for

router = APIRouter(route_class=WebRoute)
PAGE_SIZE = 50
HISTORY_PAGE_SIZE = 20
ADDRESSES = ("billing_address", "shipping_address")
DEFAULT_VALUES = {"default_currency": "EUR", "default_language": "de-DE", "contacts.0.is_primary": "on"}


# --- list and search ----------------------------------------------------------------------------


def search_filters(text: str) -> CustomerFilter:
    """One search box for three things: an e-mail (has an `@`) is the contact filter, else name or ERP number."""
    text = text.strip()[:500]
    if not text:
        return CustomerFilter()
    return CustomerFilter(email=text[:320]) if "@" in text else CustomerFilter(q=text)


async def _page(session: AsyncSession, principal: Principal, search: str, cursor: str | None) -> dict[str, Any]:
    items, next_cursor = await service.list_customers(
        session, principal.org_id, search_filters(search), limit=PAGE_SIZE, cursor=cursor or None
    )
    return {"items": items, "next_cursor": next_cursor, "search": search, "first_page": not cursor}


@router.get("/customers")
async def customer_list(
    request: Request,
    session: SessionDep,
    principal: WebUser,
    q: str = "",
    cursor: str | None = None,
    deleted: str | None = None,
) -> Response:
    context = await _page(session, principal, q, cursor)
    return render(request, "customers/list.html", {**context, "deleted": deleted})


@router.get("/customers/rows")
async def customer_rows(
    request: Request, session: SessionDep, principal: WebUser, q: str = "", cursor: str | None = None
) -> Response:
    """The table rows for search-as-you-type and the "more" button (htmx)."""
    context = await _page(session, principal, q, cursor)
    headers = {"HX-Replace-Url": "/customers" + (f"?q={quote(q, safe='')}" if q.strip() else "")} if not cursor else {}
    return render(request, "customers/_rows.html", context, headers=headers)


# --- one customer -------------------------------------------------------------------------------


def editable_fields(customer: CustomerOut) -> dict[str, Any]:
    """The fields a person edits, as the API shows them (the base the edit is compared against)."""
    return customer.model_dump(include=set(CustomerFields.model_fields), mode="json")


def form_values(fields: dict[str, Any]) -> dict[str, str]:
    """The fields as the inputs show them: `billing_address.city`, metadata as JSON text."""
    values = {
        name: fields.get(name) or "" for name in ("name", "erp_customer_number", "default_currency", "default_language")
    }
    for address in ADDRESSES:
        for key in ADDRESS_FIELDS:
            values[f"{address}.{key}"] = (fields.get(address) or {}).get(key) or ""
    metadata = fields.get("metadata") or {}
    values["metadata"] = json.dumps(metadata, ensure_ascii=False, indent=2) if metadata else ""
    return values


def fields_from_form(form: FormData) -> tuple[dict[str, Any], FieldErrors]:
    """The customer the form describes; blank optional inputs are `null`, as in the API."""
    errors: FieldErrors = {}
    fields: dict[str, Any] = {
        "name": form_text(form, "name"),
        "erp_customer_number": form_text(form, "erp_customer_number").strip() or None,
        "default_currency": form_text(form, "default_currency").strip(),
        "default_language": form_text(form, "default_language").strip(),
    }
    for address in ADDRESSES:
        values = {key: form_text(form, f"{address}.{key}").strip() or None for key in ADDRESS_FIELDS}
        fields[address] = values if any(values.values()) else None
    raw_metadata = form_text(form, "metadata").strip()
    fields["metadata"] = {}
    if raw_metadata:
        try:
            metadata = json.loads(raw_metadata)
        except ValueError as exc:
            add_error(errors, "metadata", f"not valid JSON: {exc}")
        else:
            if isinstance(metadata, dict):
                fields["metadata"] = metadata
            else:
                add_error(errors, "metadata", 'must be a JSON object, e.g. {"discount_group": "A"}')
    return fields, errors


def _merge_errors(target: FieldErrors, more: FieldErrors) -> FieldErrors:
    for field, reasons in more.items():
        target.setdefault(field, []).extend(reasons)
    return target


async def _customer(session: AsyncSession, principal: Principal, customer_id: uuid.UUID) -> service.CustomerDocument:
    return await service.get_customer(session, principal.org_id, customer_id)


async def _render_customer(
    request: Request, session: AsyncSession, principal: Principal, customer_id: uuid.UUID, template: str, **extra: Any
) -> Response:
    """`template` with the customer (404 when the org has none of this id)."""
    document = await _customer(session, principal, customer_id)
    return render(request, template, {"customer": document.customer, **extra})


def _render_detail(request: Request, customer: CustomerOut, status: int = 200, **extra: Any) -> Response:
    fields = editable_fields(customer)
    context = {
        "customer": customer,
        "contacts": customer.contacts,
        "values": form_values(fields),
        "base": json.dumps(fields, ensure_ascii=False),
        "contact_values": {},
        **extra,
    }
    return render(request, "customers/detail.html", context, status=status)


@router.get("/customers/new")
async def new_customer_page(request: Request, principal: WebWriter) -> Response:
    return render(request, "customers/new.html", {"values": DEFAULT_VALUES})


@router.post("/customers/new", dependencies=[CsrfChecked])
async def create_customer(request: Request, session: SessionDep, principal: WebWriter) -> Response:
    form = await request.form()
    fields, errors = fields_from_form(form)
    contact_email = form_text(form, "contacts.0.email").strip()
    contacts = []
    if contact_email:
        contacts.append(
            {
                "email": contact_email,
                "name": form_text(form, "contacts.0.name").strip() or None,
                "is_primary": form.get("contacts.0.is_primary") == "on",
            }
        )
    values = {name: form_text(form, name) for name in form if name != "csrf_token"}
    try:
        data = CustomerCreate.model_validate({**fields, "metadata": fields["metadata"] or None, "contacts": contacts})
    except ValidationError as exc:
        errors = _merge_errors(errors, errors_of(exc))
    if errors:
        return render(request, "customers/new.html", {"values": values, "errors": errors}, status=422)
    try:
        async with session.begin_nested():  # refused (an ERP number taken): nothing written, the form again
            document = await service.create_customer(session, principal.org_id, data)
    except AppError as exc:
        context = {"values": values, "errors": errors_of(exc), "conflict": _conflict_link(exc)}
        return render(request, "customers/new.html", context, status=exc.status)
    return redirect(request, f"/customers/{document.customer.id}")


def _conflict_link(exc: AppError) -> str | None:
    """A clash with another customer's ERP number links to that customer."""
    if isinstance(exc, Conflict) and exc.details.get("field") == "erp_customer_number":
        return f"/customers/{exc.details['existing_id']}"
    return None


@router.get("/customers/{customer_id}")
async def customer_page(request: Request, customer_id: uuid.UUID, session: SessionDep, principal: WebUser) -> Response:
    """The customer; for a merged-away one a note that leads to the customer it lives on in (404, as the API
    answers, but a page a person can go on from)."""
    try:
        document = await _customer(session, principal, customer_id)
    except NotFound as exc:
        merged_into = exc.details.get("merged_into")
        if merged_into is None:
            raise
        survivor = await live_customer(session, principal.org_id, merged_into)
        return render(request, "customers/merged.html", {"customer_id": customer_id, "survivor": survivor}, 404)
    return _render_detail(request, document.customer)


# A chain of merges (A into B, B into C) is followed this far.
MAX_HOPS = 20


async def live_customer(session: AsyncSession, org_id: OrgId, merged_into: Any) -> CustomerOut | None:
    """The customer a merged-away one lives on in: its survivor, or that one's when it was merged again;
    None when the chain ends at a deleted customer."""
    for _ in range(MAX_HOPS):
        try:
            return (await service.get_customer(session, org_id, uuid.UUID(str(merged_into)))).customer
        except NotFound as exc:
            merged_into = exc.details.get("merged_into")
            if merged_into is None:
                return None
    return None


@router.get("/customers/{customer_id}/history")
async def customer_history(
    request: Request, customer_id: uuid.UUID, session: SessionDep, principal: WebUser, cursor: str | None = None
) -> Response:
    """The history section (htmx loads it into the customer page), its next rows ("more"), or a page of its own."""
    entries, next_cursor = await history_service.customer_history(
        session, principal.org_id, customer_id, limit=HISTORY_PAGE_SIZE, cursor=cursor
    )
    context = {"history": entries, "history_cursor": next_cursor, "customer_id": customer_id}
    if is_htmx(request):
        return render(request, "customers/_history_rows.html" if cursor else "customers/_history.html", context)
    _ = gettext_for(request)
    try:
        name = (await service.get_customer(session, principal.org_id, customer_id)).customer.name
    except NotFound:  # deleted: its history stays
        name = _("Deleted customer")
    return render(request, "customers/history.html", {**context, "customer_name": name})


@router.get("/customers/{customer_id}/fields")
async def customer_fields(
    request: Request, customer_id: uuid.UUID, session: SessionDep, principal: WebUser
) -> Response:
    """The fields as text (htmx: "cancel" of the edit form)."""
    return await _render_customer(request, session, principal, customer_id, "customers/_fields.html", focus_edit=True)


@router.get("/customers/{customer_id}/edit")
async def edit_customer_form(
    request: Request, customer_id: uuid.UUID, session: SessionDep, principal: WebWriter
) -> Response:
    document = await _customer(session, principal, customer_id)
    if not is_htmx(request):
        return _render_detail(request, document.customer, editing=True)
    fields = editable_fields(document.customer)
    context = {
        "customer": document.customer,
        "values": form_values(fields),
        "base": json.dumps(fields, ensure_ascii=False),
    }
    return render(request, "customers/_fields_form.html", context)


@router.post("/customers/{customer_id}", dependencies=[CsrfChecked])
async def save_customer(
    request: Request, customer_id: uuid.UUID, session: SessionDep, principal: WebWriter
) -> Response:
    """Saves what the person changed, as a merge patch against what the form showed them.

    Fields the person did not touch are not sent, so a concurrent change to another field survives. One
    transaction reads the customer and writes the patch (`update_customer` locks the row, as for the API).
    """
    form = await request.form()
    desired, errors = fields_from_form(form)
    raw_base = form_text(form, "base")
    values = {name: form_text(form, name) for name in form if name not in ("csrf_token", "base")}
    try:
        base = json.loads(raw_base)
        if not isinstance(base, dict):
            raise ValueError
    except ValueError:
        base = None
    current = await _customer(session, principal, customer_id)
    if base is None:
        base = editable_fields(current.customer)
        raw_base = json.dumps(base, ensure_ascii=False)
    if errors:  # the metadata is not JSON: check the rest too, so every problem shows at once
        desired["metadata"] = base.get("metadata") or {}
    patch = merge_patch_between(base, desired)
    document = current
    conflict = None
    try:
        checked = CustomerPatch.model_validate(patch)
        if not errors and patch:
            async with session.begin_nested():  # refused: nothing written, the form again with the reasons
                document = await service.update_customer(session, principal.org_id, customer_id, checked, None)
    except ValidationError as exc:
        errors = _merge_errors(errors, errors_of(exc))
    except NotFound:
        raise
    except AppError as exc:
        errors = _merge_errors(errors, errors_of(exc))
        conflict = _conflict_link(exc)
    if errors:
        status = 409 if conflict else 422
        context = {"values": values, "base": raw_base, "errors": errors, "conflict": conflict}
        if is_htmx(request):
            return render(request, "customers/_fields_form.html", {**context, "customer": current.customer}, status)
        return _render_detail(request, current.customer, status=status, editing=True, **context)
    if not is_htmx(request):
        return redirect(request, f"/customers/{customer_id}")
    _ = gettext_for(request)
    saved = _("Saved.") if patch else _("Nothing changed.")
    return render(request, "customers/_fields.html", {"customer": document.customer, "saved": saved})


@router.get("/customers/{customer_id}/delete")
async def delete_customer_page(
    request: Request, customer_id: uuid.UUID, session: SessionDep, principal: WebAdmin
) -> Response:
    return await _render_customer(request, session, principal, customer_id, "customers/delete.html")


@router.post("/customers/{customer_id}/delete", dependencies=[CsrfChecked])
async def delete_customer(
    request: Request, customer_id: uuid.UUID, session: SessionDep, principal: WebAdmin
) -> Response:
    await service.delete_customer(session, principal.org_id, customer_id, None)
    return redirect(request, "/customers?deleted=1")


# --- contacts -----------------------------------------------------------------------------------


def _contact_fields(form: FormData) -> dict[str, Any]:
    return {
        "email": form_text(form, "email").strip(),
        "name": form_text(form, "name").strip() or None,
        "is_primary": form.get("is_primary") == "on",
    }


async def _contacts_response(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    customer_id: uuid.UUID,
    status: int = 200,
    **extra: Any,
) -> Response:
    """htmx gets the contacts section again; a plain form goes back to the customer page."""
    document = await _customer(session, principal, customer_id)
    if not is_htmx(request):
        if status == 200 and not extra.get("editing_contact"):
            return redirect(request, f"/customers/{customer_id}#contacts")
        return _render_detail(request, document.customer, status=status, **extra)
    context = {"customer": document.customer, "contacts": document.customer.contacts, "contact_values": {}, **extra}
    return render(request, "customers/_contacts.html", context, status=status)


@router.get("/customers/{customer_id}/contacts")
async def contacts_section(
    request: Request, customer_id: uuid.UUID, session: SessionDep, principal: WebUser
) -> Response:
    document = await _customer(session, principal, customer_id)
    context = {"customer": document.customer, "contacts": document.customer.contacts, "contact_values": {}}
    return render(request, "customers/_contacts.html", context)


@router.post("/customers/{customer_id}/contacts", dependencies=[CsrfChecked])
async def add_contact(request: Request, customer_id: uuid.UUID, session: SessionDep, principal: WebWriter) -> Response:
    form = await request.form()
    values = {name: form_text(form, name) for name in ("email", "name", "is_primary")}
    try:
        data = ContactIn.model_validate(_contact_fields(form))
        async with session.begin_nested():  # refused (the e-mail is taken): nothing written, the form again
            await service.create_contact(session, principal.org_id, customer_id, data)
    except ValidationError as exc:
        return await _contacts_response(
            request, session, principal, customer_id, 422, contact_errors=errors_of(exc), contact_values=values
        )
    except NotFound:
        raise
    except AppError as exc:
        return await _contacts_response(
            request, session, principal, customer_id, exc.status, contact_errors=errors_of(exc), contact_values=values
        )
    _ = gettext_for(request)
    return await _contacts_response(request, session, principal, customer_id, contacts_message=_("Contact added."))


@router.get("/customers/{customer_id}/contacts/{contact_id}/edit")
async def edit_contact_form(
    request: Request, customer_id: uuid.UUID, contact_id: uuid.UUID, session: SessionDep, principal: WebWriter
) -> Response:
    return await _contacts_response(request, session, principal, customer_id, editing_contact=contact_id)


@router.post("/customers/{customer_id}/contacts/{contact_id}", dependencies=[CsrfChecked])
async def save_contact(
    request: Request, customer_id: uuid.UUID, contact_id: uuid.UUID, session: SessionDep, principal: WebWriter
) -> Response:
    form = await request.form()
    fields = _contact_fields(form)
    values = {name: form_text(form, name) for name in ("email", "name")}
    try:
        patch = ContactPatch.model_validate({"email": fields["email"], "name": fields["name"]})
        async with session.begin_nested():  # refused (the e-mail is taken): nothing written, the form again
            await service.update_contact(session, principal.org_id, customer_id, contact_id, patch)
    except ValidationError as exc:
        errors = errors_of(exc)
    except NotFound:
        raise
    except AppError as exc:
        errors = errors_of(exc)
    else:
        _ = gettext_for(request)
        message = _("Contact saved.")
        return await _contacts_response(request, session, principal, customer_id, contacts_message=message)
    editing = {"editing_contact": contact_id, "edit_errors": errors, "edit_values": values}
    return await _contacts_response(request, session, principal, customer_id, 422, **editing)


@router.post("/customers/{customer_id}/contacts/{contact_id}/primary", dependencies=[CsrfChecked])
async def make_primary(
    request: Request, customer_id: uuid.UUID, contact_id: uuid.UUID, session: SessionDep, principal: WebWriter
) -> Response:
    contact: ContactOut = await service.update_contact(
        session, principal.org_id, customer_id, contact_id, ContactPatch(is_primary=True)
    )
    _ = gettext_for(request)
    message = _("%(email)s is now the primary contact.") % {"email": contact.email}
    return await _contacts_response(request, session, principal, customer_id, contacts_message=message)


@router.post("/customers/{customer_id}/contacts/{contact_id}/delete", dependencies=[CsrfChecked])
async def delete_contact(
    request: Request, customer_id: uuid.UUID, contact_id: uuid.UUID, session: SessionDep, principal: WebWriter
) -> Response:
    await service.delete_contact(session, principal.org_id, customer_id, contact_id)
    _ = gettext_for(request)
    message = _("Contact deleted.")
    return await _contacts_response(request, session, principal, customer_id, contacts_message=message)
