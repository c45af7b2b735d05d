"""Customers and contacts: the rules of API.md §4 and §5. Every function takes the caller's org."""

import hashlib
import json
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master import validation
from customer_master.auth.tenancy import OrgId
from customer_master.customers.models import Contact, Customer
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
from customer_master.db.session import driver_connection
from customer_master.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from customer_master.merge_patch import merge_patch
from customer_master.pagination import decode_cursor, encode_cursor

NOT_NULL_FIELDS = ("name", "default_currency", "default_language")


# --- reading ----------------------------------------------------------------------------------


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


LIST_COLUMNS = """c.id, c.name, c.erp_customer_number, c.default_currency, c.default_language,
       c.billing_address_json::text AS billing_address,
       (SELECT count(*) FROM customer_contact cc
         WHERE cc.org_id = c.org_id AND cc.customer_id = c.id) AS contact_count"""


def list_query(
    org_id: OrgId,
    *,
    q: str | None = None,
    erp_number: str | None = None,
    email: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[str, list[Any]]:
    """The SQL of one list page and its parameters (`bench/api.py` times the same statement)."""
    params: list[Any] = [org_id, limit + 1]
    conditions = ["c.org_id = $1"]

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    search = q.strip() if q else ""
    if search:
        # Each arm has its own index: the org's trigram GIN on the folded name, text_pattern_ops on the
        # ERP number, so the planner can combine them (or walk the org in name order when many match).
        # A term with a character no ERP number has (`ö`, a space) cannot start one: no ERP arm then.
        q_like = param(_like_escape(search))
        name_arm = f"c.name_fold LIKE '%' || cm_fold({q_like}) || '%' ESCAPE '\\'"
        if validation.ERP_NUMBER_PATTERN.fullmatch(search):
            erp_arm = f"lower(c.erp_customer_number) LIKE lower({q_like}) || '%' ESCAPE '\\'"
            conditions.append(f"({name_arm} OR {erp_arm})")
        else:
            conditions.append(name_arm)
    if erp_number is not None:
        conditions.append(f"c.erp_customer_number = {param(erp_number.strip())}")
    if email is not None:
        conditions.append(
            "EXISTS (SELECT 1 FROM customer_contact cc WHERE cc.org_id = c.org_id"
            f" AND cc.customer_id = c.id AND cc.email = CAST({param(email.strip())} AS citext))"
        )
    if cursor:
        after_name, after_id = decode_cursor(cursor, str)
        conditions.append(f"(lower(c.name), c.id) > ({param(after_name)}, {param(after_id)})")
    where = " AND ".join(conditions)
    if not search:
        sql = f"""
        SELECT {LIST_COLUMNS}, lower(c.name) AS sort_name
          FROM customer c
         WHERE {where}
         ORDER BY lower(c.name), c.id
         LIMIT $2"""
    else:
        # Find the page's ids first: every column this needs is in the keyset index, so a walk in name
        # order filters index entries without reading the table; then read just those rows.
        sql = f"""
        WITH page AS MATERIALIZED (
          SELECT c.id, lower(c.name) AS sort_name
            FROM customer c
           WHERE {where}
           ORDER BY lower(c.name), c.id
           LIMIT $2)
        SELECT {LIST_COLUMNS}, page.sort_name
          FROM page JOIN customer c ON c.org_id = $1 AND c.id = page.id
         ORDER BY page.sort_name, page.id"""
    return sql, params


async def list_customers(
    session: AsyncSession,
    org_id: OrgId,
    *,
    q: str | None = None,
    erp_number: str | None = None,
    email: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[CustomerListItem], str | None]:
    """One page ordered by name (case-insensitive) then id; the cursor continues after its last row."""
    sql, params = list_query(org_id, q=q, erp_number=erp_number, email=email, limit=limit, cursor=cursor)
    conn = await driver_connection(session)
    if q and q.strip():
        # Plan each search for its own term: a generic plan of the cached statement cannot use the ERP
        # prefix index (LIKE needs the pattern at plan time) nor judge how many names match.
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            rows = await conn.fetch(sql, *params)
    else:
        rows = await conn.fetch(sql, *params)
    items = [
        CustomerListItem(
            id=row["id"],
            name=row["name"],
            erp_customer_number=row["erp_customer_number"],
            default_currency=row["default_currency"],
            default_language=row["default_language"],
            billing_address=_json_or_none(row["billing_address"]),
            contact_count=row["contact_count"],
        )
        for row in rows[:limit]
    ]
    next_cursor = encode_cursor(rows[limit - 1]["sort_name"], rows[limit - 1]["id"]) if len(rows) > limit else None
    return items, next_cursor


async def _load_customer(session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, *, lock: bool) -> Customer:
    query = select(Customer).where(Customer.org_id == org_id, Customer.id == customer_id)
    if lock:
        # Serialises writers of one customer (contacts' primary switch, If-Match checks).
        query = query.with_for_update(key_share=True)
    customer = await session.scalar(query)
    if customer is None:
        raise NotFound("No such customer")
    return customer


async def _contacts_of(session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID) -> list[Contact]:
    result = await session.scalars(
        select(Contact)
        .where(Contact.org_id == org_id, Contact.customer_id == customer_id)
        .order_by(Contact.is_primary.desc(), Contact.email, Contact.id)
    )
    return list(result)


def _contact_out(contact: Contact) -> ContactOut:
    return ContactOut.model_validate(contact, from_attributes=True)


class CustomerDocument:
    """A customer as the API shows it, serialised once, with the ETag of exactly those bytes."""

    def __init__(self, customer: CustomerOut) -> None:
        self.customer = customer
        self.body = customer.model_dump_json().encode()
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'


# A customer with its contacts (in `_contacts_of`'s order) in one round trip: every customer document the
# API answers is built from it (`get_customer`), so its bytes, and so its ETag, have one source.
GET_CUSTOMER = """
SELECT c.id, c.org_id, c.name, c.erp_customer_number, c.default_currency, c.default_language,
       c.billing_address_json::text AS billing_address, c.shipping_address_json::text AS shipping_address,
       c.metadata_json::text AS metadata, c.created_at, c.updated_at,
       (SELECT array_agg((cc.id, cc.email::text, cc.name, cc.is_primary, cc.created_at, cc.updated_at)
                         ORDER BY cc.is_primary DESC, cc.email, cc.id)
          FROM customer_contact cc
         WHERE cc.org_id = c.org_id AND cc.customer_id = c.id) AS contacts
  FROM customer c
 WHERE c.org_id = $1 AND c.id = $2
"""


async def get_customer(session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID) -> CustomerDocument:
    conn = await driver_connection(session)
    row = await conn.fetchrow(GET_CUSTOMER, org_id, customer_id)
    if row is None:
        raise NotFound("No such customer")
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
    return CustomerDocument(
        CustomerOut(
            id=row["id"],
            org_id=row["org_id"],
            name=row["name"],
            erp_customer_number=row["erp_customer_number"],
            default_currency=row["default_currency"],
            default_language=row["default_language"],
            billing_address=_json_or_none(row["billing_address"]),
            shipping_address=_json_or_none(row["shipping_address"]),
            metadata=_json_or_none(row["metadata"]) or {},
            contacts=contacts,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
    )


def _json_or_none(value: str | None) -> Any:
    return json.loads(value) if value is not None else None


def check_if_match(if_match: str | None, document: CustomerDocument) -> None:
    """`If-Match` names the current ETag (or `*`), else 412."""
    if if_match is None:
        return
    tags = {tag.strip().removeprefix("W/") for tag in if_match.split(",")}
    if "*" not in tags and document.etag not in tags:
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


async def _existing_erp_holder(session: AsyncSession, org_id: OrgId, erp_number: str) -> uuid.UUID | None:
    return await session.scalar(
        select(Customer.id).where(Customer.org_id == org_id, Customer.erp_customer_number == erp_number)
    )


def _erp_conflict(erp_number: str, existing_id: uuid.UUID | None) -> Conflict:
    return Conflict(f"ERP number {erp_number} belongs to another customer", "erp_customer_number", existing_id)


async def create_customer(session: AsyncSession, org_id: OrgId, data: CustomerCreate) -> CustomerDocument:
    """A customer and its first contacts, in the caller's transaction."""
    customer = await session.scalar(
        insert(Customer)
        .values(org_id=org_id, **_stored_fields(data))
        .on_conflict_do_nothing(
            index_elements=["org_id", "erp_customer_number"],
            index_where=Customer.erp_customer_number.is_not(None),
        )
        .returning(Customer)
    )
    if customer is None:
        assert data.erp_customer_number is not None
        raise _erp_conflict(
            data.erp_customer_number, await _existing_erp_holder(session, org_id, data.erp_customer_number)
        )
    if data.contacts:
        await session.execute(
            insert(Contact),
            [
                {
                    "org_id": org_id,
                    "customer_id": customer.id,
                    "email": c.email,
                    "name": c.name,
                    "is_primary": c.is_primary,
                }
                for c in data.contacts
            ],
        )
    return await get_customer(session, org_id, customer.id)


async def update_customer(
    session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, patch: CustomerPatch, if_match: str | None
) -> CustomerDocument:
    customer = await _load_customer(session, org_id, customer_id, lock=True)
    document = await get_customer(session, org_id, customer_id)
    check_if_match(if_match, document)
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
        holder = await _existing_erp_holder(session, org_id, erp_number)
        if holder is not None:
            raise _erp_conflict(erp_number, holder)
    try:
        # In a savepoint: after a unique violation the transaction must still run the holder lookup below.
        async with session.begin_nested():
            await session.execute(
                update(Customer).where(Customer.org_id == org_id, Customer.id == customer_id).values(**new_values)
            )
    except IntegrityError:  # another request took the ERP number between the check and the write
        raise _erp_conflict(erp_number, await _existing_erp_holder(session, org_id, erp_number)) from None
    return await get_customer(session, org_id, customer_id)


async def delete_customer(session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, if_match: str | None) -> None:
    """The customer and (by the foreign key's cascade) its contacts."""
    await _load_customer(session, org_id, customer_id, lock=True)
    if if_match is not None:
        check_if_match(if_match, await get_customer(session, org_id, customer_id))
    await session.execute(delete(Customer).where(Customer.org_id == org_id, Customer.id == customer_id))


# --- contacts ---------------------------------------------------------------------------------


async def list_contacts(session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID) -> list[ContactOut]:
    await _load_customer(session, org_id, customer_id, lock=False)
    return [_contact_out(contact) for contact in await _contacts_of(session, org_id, customer_id)]


async def _unmark_primary(
    session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, except_id: uuid.UUID | None
) -> None:
    query = update(Contact).where(
        Contact.org_id == org_id, Contact.customer_id == customer_id, Contact.is_primary.is_(True)
    )
    if except_id is not None:
        query = query.where(Contact.id != except_id)
    await session.execute(query.values(is_primary=False))


async def _email_holder(session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, email: str) -> uuid.UUID | None:
    return await session.scalar(
        select(Contact.id).where(Contact.org_id == org_id, Contact.customer_id == customer_id, Contact.email == email)
    )


def _email_conflict(email: str, existing_id: uuid.UUID | None) -> Conflict:
    return Conflict(f"This customer has a contact with e-mail {email} already", "email", existing_id)


async def create_contact(session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, data: ContactIn) -> ContactOut:
    await _load_customer(session, org_id, customer_id, lock=True)
    holder = await _email_holder(session, org_id, customer_id, data.email)
    if holder is not None:
        raise _email_conflict(data.email, holder)
    if data.is_primary:
        await _unmark_primary(session, org_id, customer_id, except_id=None)
    contact = await session.scalar(
        insert(Contact)
        .values(
            org_id=org_id,
            customer_id=customer_id,
            email=data.email,
            name=data.name,
            is_primary=data.is_primary,
        )
        .returning(Contact)
    )
    assert contact is not None
    return _contact_out(contact)


async def update_contact(
    session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, contact_id: uuid.UUID, patch: ContactPatch
) -> ContactOut:
    await _load_customer(session, org_id, customer_id, lock=True)
    contact = await session.scalar(
        select(Contact).where(Contact.org_id == org_id, Contact.customer_id == customer_id, Contact.id == contact_id)
    )
    if contact is None:
        raise NotFound("No such contact")
    changes = patch.model_dump(exclude_unset=True)
    nulls = [
        {"field": f, "reason": "cannot be null"} for f in ("email", "is_primary") if f in changes and changes[f] is None
    ]
    if nulls:
        raise ValidationFailed(nulls)
    if "email" in changes and changes["email"] != contact.email:
        holder = await _email_holder(session, org_id, customer_id, changes["email"])
        if holder is not None:
            raise _email_conflict(changes["email"], holder)
    if changes.get("is_primary"):
        await _unmark_primary(session, org_id, customer_id, except_id=contact_id)
    if changes:
        await session.execute(
            update(Contact).where(Contact.org_id == org_id, Contact.id == contact_id).values(**changes)
        )
        await session.refresh(contact)
    return _contact_out(contact)


async def delete_contact(session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, contact_id: uuid.UUID) -> None:
    await _load_customer(session, org_id, customer_id, lock=True)
    deleted = await session.scalar(
        delete(Contact)
        .where(Contact.org_id == org_id, Contact.customer_id == customer_id, Contact.id == contact_id)
        .returning(Contact.id)
    )
    if deleted is None:
        raise NotFound("No such contact")
