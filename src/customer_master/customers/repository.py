"""The SQL of customers and contacts. Every function takes the caller's org and filters by it.

The two reads the API answers most (a list page, one customer with its contacts) go to the driver
directly with hand-written SQL; `bench/api.py` times the same statements. The rest is the ORM.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master import validation
from customer_master.auth.tenancy import OrgId
from customer_master.customers.models import Contact, Customer, CustomerErpAlias
from customer_master.customers.schemas import ContactIn
from customer_master.db.session import Reads, reading_connection

# --- reading customers ----------------------------------------------------------------------------


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


LIST_COLUMNS = """c.id, c.name, c.erp_customer_number, c.default_currency, c.default_language,
       c.billing_address_json::text AS billing_address,
       (SELECT count(*) FROM customer_contact cc
         WHERE cc.org_id = c.org_id AND cc.customer_id = c.id) AS contact_count"""


@dataclass(frozen=True)
class CustomerFilter:
    """What a list page is narrowed to (API.md §4): a name substring or ERP number prefix (`q`), an exact ERP
    number, a contact's e-mail. Unset narrows nothing."""

    q: str | None = None
    erp_number: str | None = None
    email: str | None = None

    @property
    def search(self) -> str:
        return self.q.strip() if self.q else ""


def list_query(
    org_id: OrgId, filters: CustomerFilter, *, limit: int = 50, after: tuple[str, uuid.UUID] | None = None
) -> tuple[str, list[Any]]:
    """The SQL of one list page and its parameters: `limit + 1` rows, so the caller sees whether more follow.

    `after` is the (lower-cased name, id) of the previous page's last row.
    """
    params: list[Any] = [org_id, limit + 1]
    conditions = ["c.org_id = $1", "c.merged_into IS NULL"]

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    search = filters.search
    if search:
        # Each arm has its own index: the org's trigram GIN on the folded name, text_pattern_ops on the
        # ERP number, so the planner can combine them (or walk the org in name order when many match).
        # A term with a character no ERP number has (`ö`, a space) cannot start one: no ERP arm then.
        q_like = param(_like_escape(search))
        name_arm = f"c.name_fold LIKE '%' || cm_fold({q_like}) || '%' ESCAPE '\\'"
        if validation.ERP_NUMBER_PATTERN.fullmatch(search):
            erp_prefix = f"LIKE lower({q_like}) || '%' ESCAPE '\\'"
            # Asked once, by the ERP prefix index, whether any number of the org starts so: when none does
            # (a word like "muller"), no row pays for folding its number (half the cost of such a search).
            any_erp = (
                f"EXISTS (SELECT 1 FROM customer e WHERE e.org_id = $1 AND lower(e.erp_customer_number) {erp_prefix})"
            )
            conditions.append(f"({name_arm} OR ({any_erp} AND lower(c.erp_customer_number) {erp_prefix}))")
        else:
            conditions.append(name_arm)
    if filters.erp_number is not None:
        conditions.append(f"c.erp_customer_number = {param(filters.erp_number.strip())}")
    if filters.email is not None:
        conditions.append(
            "EXISTS (SELECT 1 FROM customer_contact cc WHERE cc.org_id = c.org_id"
            f" AND cc.customer_id = c.id AND cc.email = CAST({param(filters.email.strip())} AS citext))"
        )
    if after is not None:
        after_name, after_id = after
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


async def fetch_customer_page(
    reads: Reads, org_id: OrgId, filters: CustomerFilter, *, limit: int = 50, after: tuple[str, uuid.UUID] | None = None
) -> list[asyncpg.Record]:
    """The rows of `list_query`: up to `limit + 1`, in name order, each with its `sort_name`."""
    sql, params = list_query(org_id, filters, limit=limit, after=after)
    conn = await reading_connection(reads)
    if filters.search:
        # Plan each search for its own term: a generic plan of the cached statement cannot use the ERP
        # prefix index (LIKE needs the pattern at plan time) nor judge how many names match.
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            return list(await conn.fetch(sql, *params))
    return list(await conn.fetch(sql, *params))


# A customer with its contacts (the primary first, then by e-mail) in one round trip: every customer document the
# API answers is built from it (`service.get_customer`), so its bytes, and so its ETag, have one source.
GET_CUSTOMER = """
SELECT c.id, c.org_id, c.name, c.erp_customer_number, c.erp_aliases, c.merged_into,
       c.default_currency, c.default_language,
       c.billing_address_json::text AS billing_address, c.shipping_address_json::text AS shipping_address,
       c.metadata_json::text AS metadata, c.created_at, c.updated_at,
       (SELECT array_agg((cc.id, cc.email::text, cc.name, cc.is_primary, cc.created_at, cc.updated_at)
                         ORDER BY cc.is_primary DESC, cc.email, cc.id)
          FROM customer_contact cc
         WHERE cc.org_id = c.org_id AND cc.customer_id = c.id) AS contacts
  FROM customer c
 WHERE c.org_id = $1 AND c.id = $2
"""


async def fetch_customer_with_contacts(reads: Reads, org_id: OrgId, customer_id: uuid.UUID) -> asyncpg.Record | None:
    """The row of `GET_CUSTOMER`, also of a tombstone (`merged_into` set); its `contacts` is an array of
    (id, email, name, is_primary, created_at, updated_at) tuples, or None when the customer has none."""
    conn = await reading_connection(reads)
    row: asyncpg.Record | None = await conn.fetchrow(GET_CUSTOMER, org_id, customer_id)
    return row


async def select_customer(
    session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, *, for_update: bool
) -> Customer | None:
    """The customer, or None. `for_update` locks its row until the transaction ends.

    The lock (FOR NO KEY UPDATE, which does not block the contacts' foreign-key checks) serialises the
    writers of one customer: the contacts' primary switch, the If-Match check and the write it guards.
    """
    query = select(Customer).where(Customer.org_id == org_id, Customer.id == customer_id)
    if for_update:
        query = query.with_for_update(key_share=True)
    return await session.scalar(query)


async def find_erp_number_holder(session: AsyncSession, org_id: OrgId, erp_number: str) -> uuid.UUID | None:
    """The id of the org's customer with this ERP number as its own or as one of its aliases, if any."""
    own = select(Customer.id).where(Customer.org_id == org_id, Customer.erp_customer_number == erp_number)
    alias = select(CustomerErpAlias.customer_id).where(
        CustomerErpAlias.org_id == org_id, CustomerErpAlias.erp_customer_number == erp_number
    )
    return await session.scalar(own.union_all(alias).limit(1))


# --- writing customers ----------------------------------------------------------------------------


async def insert_customer_unless_erp_number_taken(
    session: AsyncSession, org_id: OrgId, values: dict[str, Any]
) -> Customer | None:
    """The new customer, or None (and no write) when another customer of the org has its ERP number, as its
    own or as an alias (the alias trigger of migration 0009 refuses it; hence the savepoint)."""
    try:
        async with session.begin_nested():
            return await session.scalar(
                insert(Customer)
                .values(org_id=org_id, **values)
                .on_conflict_do_nothing(
                    index_elements=["org_id", "erp_customer_number"],
                    index_where=Customer.erp_customer_number.is_not(None),
                )
                .returning(Customer)
            )
    except IntegrityError:
        return None


async def update_customer_unless_erp_number_taken(
    session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, values: dict[str, Any]
) -> bool:
    """Write the columns; False (and no write) when the database refuses them, as it does when another
    request took the ERP number since the caller checked.

    In a savepoint: after a unique violation the transaction must still run the caller's holder lookup.
    """
    try:
        async with session.begin_nested():
            await session.execute(
                update(Customer).where(Customer.org_id == org_id, Customer.id == customer_id).values(**values)
            )
    except IntegrityError:
        return False
    return True


async def delete_customer(session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID) -> None:
    """The customer and (by the foreign key's cascade) its contacts."""
    await session.execute(delete(Customer).where(Customer.org_id == org_id, Customer.id == customer_id))


# --- contacts -------------------------------------------------------------------------------------


async def select_contact(
    session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, contact_id: uuid.UUID
) -> Contact | None:
    return await session.scalar(
        select(Contact).where(Contact.org_id == org_id, Contact.customer_id == customer_id, Contact.id == contact_id)
    )


async def find_contact_email_holder(
    session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, email: str
) -> uuid.UUID | None:
    """The id of the customer's contact with this e-mail (compared case-insensitively, it is citext), if any."""
    return await session.scalar(
        select(Contact.id).where(Contact.org_id == org_id, Contact.customer_id == customer_id, Contact.email == email)
    )


async def insert_contacts(
    session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, contacts: Sequence[ContactIn]
) -> None:
    await session.execute(
        insert(Contact),
        [
            {
                "org_id": org_id,
                "customer_id": customer_id,
                "email": c.email,
                "name": c.name,
                "is_primary": c.is_primary,
            }
            for c in contacts
        ],
    )


async def insert_contact(session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, data: ContactIn) -> Contact:
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
    return contact


async def unmark_primary_contact(
    session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, *, except_id: uuid.UUID | None
) -> None:
    """Clear the customer's primary flag (but on `except_id`), before another contact takes it: one
    primary per customer is a unique rule, checked row by row."""
    query = update(Contact).where(
        Contact.org_id == org_id, Contact.customer_id == customer_id, Contact.is_primary.is_(True)
    )
    if except_id is not None:
        query = query.where(Contact.id != except_id)
    await session.execute(query.values(is_primary=False))


async def update_contact(session: AsyncSession, org_id: OrgId, contact: Contact, changes: dict[str, Any]) -> None:
    """Write `changes` to the contact, then reload it (updated_at is set by a trigger)."""
    await session.execute(update(Contact).where(Contact.org_id == org_id, Contact.id == contact.id).values(**changes))
    await session.refresh(contact)


async def delete_contact(session: AsyncSession, org_id: OrgId, customer_id: uuid.UUID, contact_id: uuid.UUID) -> bool:
    """Whether the customer had this contact (and now has not)."""
    deleted = await session.scalar(
        delete(Contact)
        .where(Contact.org_id == org_id, Contact.customer_id == customer_id, Contact.id == contact_id)
        .returning(Contact.id)
    )
    return deleted is not None
