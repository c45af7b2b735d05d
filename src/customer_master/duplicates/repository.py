"""The SQL of duplicates (API.md §12). Every statement filters by the caller's org.

The reads go straight to the driver (`db.session.driver_connection`), as detection's do; the dismissal's
two statements go through the session.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import OrgId
from customer_master.db.session import driver_connection
from customer_master.detection import name_index

NAME_VERSION = "SELECT version, epoch FROM customer_name_version WHERE org_id = $1"


# Contact e-mails and (non-public) domains that several customers share, with their customers (a customer may
# come twice in a domain's list; the service counts them). Grouped as text: every write path stores e-mails
# normalised (lower case), and hashing citext costs a lower() per value (~700 ms at 145,000 contacts as
# citext). An e-mail is one customer's at most once, so two of it are two customers; a domain is shared when
# its contacts' customers are not all one (min ≠ max). One pass each, no second lookup (in one statement with
# a join back, the planner expected every value to be shared and joined all contacts, ~500 ms).
# Tombstones have no contacts (the merge moves them).
SHARED_CONTACT_VALUES = """
SELECT 'e' AS kind, email::text AS value, array_agg(customer_id) AS customers
  FROM customer_contact WHERE org_id = $1 GROUP BY 2 HAVING count(*) > 1
UNION ALL
SELECT 'd', split_part(email::text, '@', 2), array_agg(customer_id)
  FROM customer_contact WHERE org_id = $1 AND split_part(email::text, '@', 2) <> ALL ($2::text[])
 GROUP BY 2 HAVING min(uuid_send(customer_id)) <> max(uuid_send(customer_id))"""


async def name_version(session: AsyncSession, org_id: OrgId) -> tuple[int, uuid.UUID | None]:
    conn = await driver_connection(session)
    row = await conn.fetchrow(NAME_VERSION, org_id)
    return (row["version"], row["epoch"]) if row else (0, None)


async def load_names(session: AsyncSession, org_id: OrgId) -> Any:
    """The row of detection's `name_index.LOAD`: the org's live names as trigrams, and their version."""
    conn = await driver_connection(session)
    # One statement, one snapshot. Its cost passes jit_above_cost at ~100,000 names; compiling costs more
    # than it saves. The sorts of 16-byte ids fit in 64 MB up to a few million names.
    await conn.execute("SELECT set_config('jit', 'off', true), set_config('work_mem', '64MB', true)")
    return await conn.fetchrow(name_index.LOAD, org_id)


async def shared_contact_values(session: AsyncSession, org_id: OrgId, public_domains: Sequence[str]) -> list[Any]:
    """Rows (kind 'e' for an e-mail, 'd' for a domain; value; customers) of the values several customers share."""
    conn = await driver_connection(session)
    await conn.execute("SELECT set_config('work_mem', '64MB', true)")  # the groupings hash in memory
    return list(await conn.fetch(SHARED_CONTACT_VALUES, org_id, list(public_domains)))


async def dismissed_pairs(session: AsyncSession, org_id: OrgId) -> list[tuple[uuid.UUID, uuid.UUID]]:
    conn = await driver_connection(session)
    rows = await conn.fetch("SELECT customer_low, customer_high FROM duplicate_dismissal WHERE org_id = $1", org_id)
    return [(row["customer_low"], row["customer_high"]) for row in rows]


async def customers_by_id(session: AsyncSession, org_id: OrgId, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """Live customers' ids, names and ERP numbers."""
    conn = await driver_connection(session)
    rows = await conn.fetch(
        """SELECT id, name, erp_customer_number FROM customer
            WHERE org_id = $1 AND id = ANY ($2::uuid[]) AND merged_into IS NULL""",
        org_id,
        list(ids),
    )
    return {row["id"]: row for row in rows}


async def lock_customers(session: AsyncSession, org_id: OrgId, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """The customers with these ids (tombstones too: their `merged_into`), kept from being deleted until the
    transaction ends (a dismissal's foreign keys need them)."""
    result = await session.execute(
        text("""SELECT id, merged_into FROM customer
                 WHERE org_id = :org_id AND id = ANY (CAST(:ids AS uuid[]))
                 ORDER BY id FOR KEY SHARE"""),
        {"org_id": org_id, "ids": list(ids)},
    )
    return {row.id: row for row in result}


async def insert_dismissal(session: AsyncSession, org_id: OrgId, low: uuid.UUID, high: uuid.UUID) -> None:
    await session.execute(
        text("""INSERT INTO duplicate_dismissal (org_id, customer_low, customer_high)
                VALUES (:org_id, :low, :high) ON CONFLICT DO NOTHING"""),
        {"org_id": org_id, "low": low, "high": high},
    )
