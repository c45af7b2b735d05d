"""The SQL of merge and undo (API.md §12). Every statement takes the caller's org and filters by it.

A merge's writes are set-based statements over its customers and contacts, in the order the history
needs (API.md §10): the merged customers' contacts leave before their customers become tombstones, so a
`customer.merged_away` entry comes after its contacts' entries. Undo writes the merge record's rows back.
"""

import json
import uuid
from typing import Any

import asyncpg

from customer_master.auth.tenancy import OrgId
from customer_master.history.repository import VISIBLE

LOCK_CUSTOMERS = """
SELECT id, merged_into, name, erp_customer_number, erp_aliases, default_currency, default_language,
       billing_address_json::text AS billing_address, shipping_address_json::text AS shipping_address,
       metadata_json::text AS metadata
  FROM customer
 WHERE org_id = $1 AND id = ANY ($2::uuid[])
 ORDER BY id
   FOR NO KEY UPDATE
"""


async def lock_customers(conn: asyncpg.Connection, org_id: OrgId, ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """The org's customers among `ids`, tombstones too, locked until the transaction ends (in id order, so
    two merges over the same customers wait for each other instead of deadlocking)."""
    rows = await conn.fetch(LOCK_CUSTOMERS, org_id, ids)
    return {row["id"]: row for row in rows}


SELECT_CONTACTS = """
SELECT id, customer_id, email::text AS email, name, is_primary
  FROM customer_contact
 WHERE org_id = $1 AND customer_id = ANY ($2::uuid[])
 ORDER BY is_primary DESC, email, id
"""


async def select_contacts(conn: asyncpg.Connection, org_id: OrgId, customer_ids: list[uuid.UUID]) -> list[Any]:
    """The contacts of these customers, each customer's primary first, then by e-mail."""
    return list(await conn.fetch(SELECT_CONTACTS, org_id, customer_ids))


# The rows as they are now, whole (less the generated columns), for an undo to write back.
INSERT_MERGE = """
INSERT INTO customer_merge (org_id, id, survivor_id, merged_ids, customers, contacts)
SELECT $1, $2, $3, $4::uuid[],
       (SELECT jsonb_agg(to_jsonb(c) - 'name_key' - 'name_fold')
          FROM customer c WHERE c.org_id = $1 AND c.id = ANY ($5::uuid[])),
       (SELECT coalesce(jsonb_agg(to_jsonb(cc)), '[]')
          FROM customer_contact cc WHERE cc.org_id = $1 AND cc.customer_id = ANY ($5::uuid[]))
"""


async def insert_merge(
    conn: asyncpg.Connection, org_id: OrgId, merge_id: uuid.UUID, survivor_id: uuid.UUID, merged_ids: list[uuid.UUID]
) -> None:
    """The merge record, with the customers and contacts as they are before its first write."""
    await conn.execute(INSERT_MERGE, org_id, merge_id, survivor_id, merged_ids, [survivor_id, *merged_ids])


DELETE_CONTACTS = "DELETE FROM customer_contact WHERE org_id = $1 AND id = ANY ($2::uuid[])"


async def delete_contacts(conn: asyncpg.Connection, org_id: OrgId, contact_ids: list[uuid.UUID]) -> None:
    if contact_ids:
        await conn.execute(DELETE_CONTACTS, org_id, contact_ids)


# Not primary on arrival: the survivor's one primary is set afterwards (`SET_CONTACTS`).
MOVE_CONTACTS = """
UPDATE customer_contact SET customer_id = $2, is_primary = false
 WHERE org_id = $1 AND id = ANY ($3::uuid[])
"""


async def move_contacts(
    conn: asyncpg.Connection, org_id: OrgId, survivor_id: uuid.UUID, contact_ids: list[uuid.UUID]
) -> None:
    if contact_ids:
        await conn.execute(MOVE_CONTACTS, org_id, survivor_id, contact_ids)


SET_CONTACTS = """
UPDATE customer_contact c SET name = s.name, is_primary = s.is_primary
  FROM unnest($2::uuid[], $3::text[], $4::boolean[]) AS s (id, name, is_primary)
 WHERE c.org_id = $1 AND c.id = s.id
"""


async def set_contacts(
    conn: asyncpg.Connection, org_id: OrgId, contacts: list[tuple[uuid.UUID, str | None, bool]]
) -> None:
    """Write (id, name, is_primary) of these contacts."""
    if contacts:
        ids, names, primaries = zip(*contacts, strict=True)
        await conn.execute(SET_CONTACTS, org_id, list(ids), list(names), list(primaries))


# Their ERP numbers and aliases now are the survivor's aliases.
MAKE_TOMBSTONES = """
UPDATE customer SET merged_into = $2, erp_customer_number = NULL, erp_aliases = '{}'
 WHERE org_id = $1 AND id = ANY ($3::uuid[])
"""


async def make_tombstones(
    conn: asyncpg.Connection, org_id: OrgId, survivor_id: uuid.UUID, merged_ids: list[uuid.UUID]
) -> None:
    await conn.execute(MAKE_TOMBSTONES, org_id, survivor_id, merged_ids)


UPDATE_SURVIVOR = """
UPDATE customer
   SET name = $3, erp_customer_number = $4, erp_aliases = $5::text[], default_currency = $6, default_language = $7,
       billing_address_json = $8::jsonb, shipping_address_json = $9::jsonb, metadata_json = $10::jsonb
 WHERE org_id = $1 AND id = $2
"""


def _json_or_null(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


async def update_survivor(
    conn: asyncpg.Connection, org_id: OrgId, survivor_id: uuid.UUID, fields: dict[str, Any]
) -> None:
    """Write the merged fields (`name`, …, `metadata` as the API names them; addresses and metadata as objects)."""
    await conn.execute(
        UPDATE_SURVIVOR,
        org_id,
        survivor_id,
        fields["name"],
        fields["erp_customer_number"],
        fields["erp_aliases"],
        fields["default_currency"],
        fields["default_language"],
        _json_or_null(fields["billing_address"]),
        _json_or_null(fields["shipping_address"]),
        _json_or_null(fields["metadata"] or None),
    )


# The survivor's entry of this transaction becomes `customer.merged` with the merged ids; written here when
# the merge changed none of its fields (the triggers record only changes).
NOTE_SURVIVOR_MERGED = """
WITH noted AS (SELECT cm_note_transaction($1))
INSERT INTO change_entry AS e (org_id, txid, type, customer_id, object_id, before, after)
SELECT c.org_id, pg_current_xact_id(), 'customer.merged', c.id, c.id,
       cm_customer_fields(c), cm_customer_fields(c) || jsonb_build_object('merged_ids', $3::jsonb)
  FROM customer c, noted
 WHERE c.org_id = $1 AND c.id = $2
ON CONFLICT (org_id, customer_id, txid, object_id) DO UPDATE
   SET position = EXCLUDED.position, type = 'customer.merged',
       after = e.after || jsonb_build_object('merged_ids', $3::jsonb)
"""


async def note_survivor_merged(
    conn: asyncpg.Connection, org_id: OrgId, survivor_id: uuid.UUID, merged_ids: list[uuid.UUID]
) -> None:
    await conn.execute(NOTE_SURVIVOR_MERGED, org_id, survivor_id, json.dumps([str(i) for i in merged_ids]))


# --- undo -----------------------------------------------------------------------------------------

LOCK_MERGE = """
SELECT survivor_id, merged_ids, txid::text AS txid, customers::text AS customers, contacts::text AS contacts,
       undone_at
  FROM customer_merge
 WHERE org_id = $1 AND id = $2
   FOR UPDATE
"""


async def lock_merge(conn: asyncpg.Connection, org_id: OrgId, merge_id: uuid.UUID) -> asyncpg.Record | None:
    """The merge record, locked (two undos of one merge wait for each other), or None."""
    row: asyncpg.Record | None = await conn.fetchrow(LOCK_MERGE, org_id, merge_id)
    return row


# Every writer of a customer or its contacts locks the customer first (as the merge did), so an entry
# written after the merge's has a later position.
CHANGED_SINCE_MERGE = f"""
SELECT EXISTS (
  SELECT 1 FROM change_entry e
   WHERE e.org_id = $1 AND e.customer_id = $2 AND e.txid <> $3::text::xid8 AND {VISIBLE}
     AND e.position > (SELECT t.first_position FROM change_transaction t
                        WHERE t.org_id = $1 AND t.txid = $3::text::xid8))
"""


async def changed_since_merge(conn: asyncpg.Connection, org_id: OrgId, customer_id: uuid.UUID, merge_txid: str) -> bool:
    """Whether the customer or one of its contacts has a history entry after the merge's transaction."""
    changed: bool = await conn.fetchval(CHANGED_SINCE_MERGE, org_id, customer_id, merge_txid)
    return changed


RESTORE_CUSTOMERS = """
UPDATE customer c
   SET name = s.name, erp_customer_number = s.erp_customer_number, erp_aliases = s.erp_aliases,
       default_currency = s.default_currency, default_language = s.default_language,
       billing_address_json = s.billing_address_json, shipping_address_json = s.shipping_address_json,
       metadata_json = s.metadata_json, merged_into = s.merged_into
  FROM jsonb_populate_recordset(NULL::customer, $2::jsonb) s
 WHERE c.org_id = $1 AND c.id = s.id AND c.id = ANY ($3::uuid[])
"""


async def restore_customers(conn: asyncpg.Connection, org_id: OrgId, customers: str, ids: list[uuid.UUID]) -> None:
    """Write back the merge record's rows (`customers`, its JSON) of these customers."""
    await conn.execute(RESTORE_CUSTOMERS, org_id, customers, ids)


# Before the contacts come back: the survivor's primary flag where the record has none, so that no
# customer holds two primaries while the next statement runs.
UNMARK_PRIMARIES = """
UPDATE customer_contact c SET is_primary = false
 WHERE c.org_id = $1 AND c.customer_id = $2 AND c.is_primary
   AND NOT EXISTS (SELECT 1 FROM jsonb_populate_recordset(NULL::customer_contact, $3::jsonb) s
                    WHERE s.id = c.id AND s.customer_id = $2 AND s.is_primary)
"""

RESTORE_CONTACTS = """
INSERT INTO customer_contact AS c (id, org_id, customer_id, email, name, is_primary, created_at, updated_at)
SELECT s.id, $1, s.customer_id, s.email, s.name, s.is_primary, s.created_at, s.updated_at
  FROM jsonb_populate_recordset(NULL::customer_contact, $2::jsonb) s
ON CONFLICT (org_id, id) DO UPDATE
   SET customer_id = EXCLUDED.customer_id, email = EXCLUDED.email, name = EXCLUDED.name,
       is_primary = EXCLUDED.is_primary
"""


async def restore_contacts(conn: asyncpg.Connection, org_id: OrgId, survivor_id: uuid.UUID, contacts: str) -> None:
    """Every contact of the record back on its customer with its id, fields and timestamps (a contact the
    merge dropped comes back as it was)."""
    await conn.execute(UNMARK_PRIMARIES, org_id, survivor_id, contacts)
    await conn.execute(RESTORE_CONTACTS, org_id, contacts)


MARK_UNDONE = "UPDATE customer_merge SET undone_at = now() WHERE org_id = $1 AND id = $2"


async def mark_undone(conn: asyncpg.Connection, org_id: OrgId, merge_id: uuid.UUID) -> None:
    await conn.execute(MARK_UNDONE, org_id, merge_id)
