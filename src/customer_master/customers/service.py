"""Customers and contacts: the rules of API.md §4 and §5. Every function takes the caller's org.

The SQL is in `customers.repository`; HTTP (headers, status codes) is in `customers.api`.
"""

import hashlib
import json
import uuid
from collections.abc import Mapping, Set
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import OrgId
from customer_master.customers import repository
from customer_master.customers.models import Contact, Customer
from customer_master.customers.repository import CustomerFilter
from customer_master.customers.schemas import (
    ContactIn,
    ContactOut,
    ContactPatch,
    CustomerCreate,
    CustomerFields,
    CustomerListItem,
    CustomerOut,
    CustomerPatch,
    address_json,
)
from customer_master.db.session import Reads
from customer_master.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from customer_master.merge_patch import merge_patch
from customer_master.pagination import decode_cursor, encode_cursor

NOT_NULL_FIELDS = ("name", "default_currency", "default_language")
RowModel = TypeVar("RowModel", bound=BaseModel)


# --- reading ----------------------------------------------------------------------------------


async def list_customers(
    reads: Reads, org_id: OrgId, filters: CustomerFilter, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[CustomerListItem], str | None]:
    """One page ordered by name (case-insensitive) then id; the cursor continues after its last row."""
    after = decode_cursor(cursor, str) if cursor else None
    rows = await repository.fetch_customer_page(reads, org_id, filters, limit=limit, after=after)
    items = [_model_from_row(CustomerListItem, row) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1]["sort_name"], rows[limit - 1]["id"]) if len(rows) > limit else None
    return items, next_cursor


def customer_not_found(merged_into: uuid.UUID | None = None) -> NotFound:
    """404 for an id the org has no customer under; a merged-away id names its survivor (API.md §12)."""
    if merged_into is None:
        return NotFound("No such customer")
    return NotFound(f"This customer was merged into {merged_into}", {"merged_into": str(merged_into)})


async def _load_customer(session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, *, lock: bool) -> Customer:
    customer = await repository.select_customer(session, org_id, customer_id, for_update=lock)
    if customer is None or customer.merged_into is not None:
        raise customer_not_found(customer.merged_into if customer else None)
    return customer


def _contact_out(contact: Contact) -> ContactOut:
    return ContactOut.model_validate(contact, from_attributes=True)


class CustomerDocument:
    """A customer as the API shows it, serialised once, with the ETag of exactly those bytes."""

    def __init__(self, customer: CustomerOut) -> None:
        self.customer = customer
        self.body = customer.model_dump_json().encode()
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'


async def get_customer(reads: Reads, org_id: OrgId, customer_id: uuid.UUID) -> CustomerDocument:
    """The customer's document: every document the API answers is built here, from one statement."""
    row = await repository.fetch_customer_with_contacts(reads, org_id, customer_id)
    if row is None or row["merged_into"] is not None:
        raise customer_not_found(row["merged_into"] if row else None)
    contacts = [
        ContactOut(
            id=contact_id,
            customer_id=customer_id,
            email=email,
            name=name,
            is_primary=is_primary,
            created_at=created_at,
            updated_at=updated_at,
        )
        for contact_id, email, name, is_primary, created_at, updated_at in row["contacts"] or ()
    ]
    metadata = json.loads(row["metadata"] or "null") or {}  # a JSON null or no value at all: {}
    return CustomerDocument(_model_from_row(CustomerOut, row, contacts=contacts, metadata=metadata))


_JSON_COLUMNS = frozenset({"billing_address", "shipping_address"})  # metadata: given, a JSON null being {}


def _model_from_row(model: type[RowModel], row: Mapping[str, Any], **given: Any) -> RowModel:
    """`model` from a row of the customer repository: each field from the column of its name (the JSON
    columns decoded), unless `given`."""
    values = {
        name: json.loads(row[name]) if name in _JSON_COLUMNS and row[name] is not None else row[name]
        for name in model.model_fields
        if name not in given
    }
    return model(**values, **given)


def check_if_match(expected_etags: Set[str] | None, document: CustomerDocument) -> None:
    """The caller's ETags (from `If-Match`, None when it sets no condition) must name the document's, else 412."""
    if expected_etags is not None and document.etag not in expected_etags:
        raise PreconditionFailed("The customer has changed since you read it; GET it again")


# --- writing customers ------------------------------------------------------------------------


def _stored_fields(fields: CustomerFields) -> dict[str, Any]:
    return {
        "name": fields.name,
        "erp_customer_number": fields.erp_customer_number,
        "default_currency": fields.default_currency,
        "default_language": fields.default_language,
        "billing_address_json": address_json(fields.billing_address),
        "shipping_address_json": address_json(fields.shipping_address),
        "metadata_json": fields.metadata or None,
    }


def _erp_conflict(erp_number: str, existing_id: uuid.UUID | None) -> Conflict:
    return Conflict(f"ERP number {erp_number} belongs to another customer", "erp_customer_number", existing_id)


async def create_customer(session: AsyncSession, org_id: OrgId, data: CustomerCreate) -> CustomerDocument:
    """A customer and its first contacts, in the caller's transaction."""
    customer = await repository.insert_customer_unless_erp_number_taken(session, org_id, _stored_fields(data))
    if customer is None:
        assert data.erp_customer_number is not None
        raise _erp_conflict(
            data.erp_customer_number,
            await repository.find_erp_number_holder(session, org_id, data.erp_customer_number),
        )
    if data.contacts:
        await repository.insert_contacts(session, org_id, customer.id, data.contacts)
    return await get_customer(session, org_id, customer.id)


async def update_customer(
    session: AsyncSession,
    org_id: OrgId,
    customer_id: uuid.UUID,
    patch: CustomerPatch,
    expected_etags: Set[str] | None,
) -> CustomerDocument:
    """Apply a JSON merge patch; `expected_etags` (see `check_if_match`) guards against a lost update."""
    customer = await _load_customer(session, org_id, customer_id, lock=True)
    document = await get_customer(session, org_id, customer_id)
    check_if_match(expected_etags, document)
    changes = patch.model_dump(exclude_unset=True)
    nulls = [{"field": f, "reason": "cannot be null"} for f in NOT_NULL_FIELDS if f in changes and changes[f] is None]
    if nulls:
        raise ValidationFailed(nulls)
    merged = merge_patch(document.customer.model_dump(include=set(CustomerFields.model_fields), mode="json"), changes)
    try:
        fields = CustomerFields.model_validate(merged)
    except ValidationError as exc:
        raise ValidationFailed.of(exc) from None
    new_values = _stored_fields(fields)
    if all(getattr(customer, column) == value for column, value in new_values.items()):
        return document  # nothing changed: no write, updated_at stays
    erp_number = new_values["erp_customer_number"]
    if erp_number is not None and erp_number != customer.erp_customer_number:
        holder = await repository.find_erp_number_holder(session, org_id, erp_number)
        if holder is not None and holder != customer_id:  # its own alias it may take back as its number
            raise _erp_conflict(erp_number, holder)
    if not await repository.update_customer_unless_erp_number_taken(session, org_id, customer_id, new_values):
        # another request took the ERP number between the check and the write
        raise _erp_conflict(erp_number, await repository.find_erp_number_holder(session, org_id, erp_number))
    return await get_customer(session, org_id, customer_id)


async def delete_customer(
    session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, expected_etags: Set[str] | None
) -> None:
    """The customer and (by the foreign key's cascade) its contacts."""
    await _load_customer(session, org_id, customer_id, lock=True)
    if expected_etags is not None:
        check_if_match(expected_etags, await get_customer(session, org_id, customer_id))
    await repository.delete_customer(session, org_id, customer_id)


# --- contacts ---------------------------------------------------------------------------------


async def list_contacts(reads: Reads, org_id: OrgId, customer_id: uuid.UUID) -> list[ContactOut]:
    """The customer's contacts, as its document lists them."""
    return (await get_customer(reads, org_id, customer_id)).customer.contacts


def _email_conflict(email: str, existing_id: uuid.UUID | None) -> Conflict:
    return Conflict(f"This customer has a contact with e-mail {email} already", "email", existing_id)


async def create_contact(session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, data: ContactIn) -> ContactOut:
    await _load_customer(session, org_id, customer_id, lock=True)
    holder = await repository.find_contact_email_holder(session, org_id, customer_id, data.email)
    if holder is not None:
        raise _email_conflict(data.email, holder)
    if data.is_primary:
        await repository.unmark_primary_contact(session, org_id, customer_id, except_id=None)
    return _contact_out(await repository.insert_contact(session, org_id, customer_id, data))


async def update_contact(
    session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, contact_id: uuid.UUID, patch: ContactPatch
) -> ContactOut:
    await _load_customer(session, org_id, customer_id, lock=True)
    contact = await repository.select_contact(session, org_id, customer_id, contact_id)
    if contact is None:
        raise NotFound("No such contact")
    changes = patch.model_dump(exclude_unset=True)
    nulls = [
        {"field": f, "reason": "cannot be null"} for f in ("email", "is_primary") if f in changes and changes[f] is None
    ]
    if nulls:
        raise ValidationFailed(nulls)
    if "email" in changes and changes["email"] != contact.email:
        holder = await repository.find_contact_email_holder(session, org_id, customer_id, changes["email"])
        if holder is not None:
            raise _email_conflict(changes["email"], holder)
    if changes.get("is_primary"):
        await repository.unmark_primary_contact(session, org_id, customer_id, except_id=contact_id)
    if changes:
        await repository.update_contact(session, org_id, contact, changes)
    return _contact_out(contact)


async def delete_contact(session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, contact_id: uuid.UUID) -> None:
    await _load_customer(session, org_id, customer_id, lock=True)
    if not await repository.delete_contact(session, org_id, customer_id, contact_id):
        raise NotFound("No such contact")
