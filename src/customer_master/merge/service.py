"""Merge customers into a survivor and undo it (API.md §12). Every function takes the caller's org.

A merge is planned in Python from the locked rows (at most 51 customers and their contacts), then written
by a few set-based statements (`merge.repository`); the merge record keeps every row as it was, and an
undo writes them back. Merges and imports of one org never interleave: a merge waits for a running import
(and an import for the merges) on the org's import lock, so an import cannot create a customer under a
number that a merge is turning into an alias.
"""

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, get_args

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import OrgId
from customer_master.customers.service import customer_not_found, get_customer
from customer_master.db.session import driver_connection
from customer_master.errors import Conflict, NotFound, ValidationFailed
from customer_master.history.context import Actor, record_changes_as
from customer_master.imports.upsert_sql import wait_for_org_imports
from customer_master.merge import repository
from customer_master.merge.schemas import MergeRequest, MergeResult, PickField, UndoResult

# The fields a merge takes whole from one customer; `metadata` is merged key by key.
WHOLE_FIELDS = tuple(name for name in get_args(PickField) if name != "metadata")


def _fields(row: asyncpg.Record) -> dict[str, Any]:
    """A locked customer row's fields as the API names them."""

    def parsed(value: str | None) -> Any:
        return None if value is None else json.loads(value)

    return {
        "name": row["name"],
        "erp_customer_number": row["erp_customer_number"],
        "erp_aliases": list(row["erp_aliases"]),
        "default_currency": row["default_currency"],
        "default_language": row["default_language"],
        "billing_address": parsed(row["billing_address"]),
        "shipping_address": parsed(row["shipping_address"]),
        "metadata": parsed(row["metadata"]) or {},
    }


@dataclass
class ContactPlan:
    """What a merge does to the contacts: which go, move to the survivor, or change (name, primary)."""

    dropped_contacts: list[uuid.UUID] = field(default_factory=list)
    moved_contacts: list[uuid.UUID] = field(default_factory=list)
    changed_contacts: list[tuple[uuid.UUID, str | None, bool]] = field(default_factory=list)


def merged_fields(customers: dict[uuid.UUID, dict[str, Any]], request: MergeRequest) -> dict[str, Any]:
    """The survivor's fields after the merge: picked, else the survivor's, else the first non-null in
    `merged_ids` order; metadata key by key (the picked customer's, the survivor's, then the merged ones',
    first value wins); every other ERP number an alias."""
    survivor = customers[request.survivor_id]
    merged = [customers[i] for i in request.merged_ids]
    result: dict[str, Any] = {}
    for name in WHOLE_FIELDS:
        if name in request.pick:
            result[name] = customers[request.pick[name]][name]
        else:
            result[name] = next((c[name] for c in (survivor, *merged) if c[name] is not None), None)
    metadata_order = [survivor, *merged]
    if "metadata" in request.pick:
        metadata_order.insert(0, customers[request.pick["metadata"]])
    metadata: dict[str, Any] = {}
    for customer in metadata_order:
        for key, value in customer["metadata"].items():
            metadata.setdefault(key, value)
    result["metadata"] = metadata
    numbers = [*survivor["erp_aliases"], survivor["erp_customer_number"]]
    for customer in merged:
        numbers += [customer["erp_customer_number"], *customer["erp_aliases"]]
    aliases = [n for n in dict.fromkeys(numbers) if n is not None and n != result["erp_customer_number"]]
    result["erp_aliases"] = aliases
    return result


def united_contacts(contacts: list[asyncpg.Record], request: MergeRequest) -> ContactPlan:
    """Contacts united by e-mail (stored lower-case): per e-mail the survivor's contact, else the first merged
    customer's, stays, a null name filled from the others; the survivor's primary stays primary, else the
    first merged customer's primary (its e-mail's kept contact) becomes it."""
    by_customer: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for contact in contacts:
        by_customer.setdefault(contact["customer_id"], []).append(contact)
    kept: dict[str, dict[str, Any]] = {}
    plan = ContactPlan()
    primary_email: str | None = None
    for customer_id in (request.survivor_id, *request.merged_ids):
        for contact in by_customer.get(customer_id, ()):
            email = contact["email"].lower()
            if contact["is_primary"] and primary_email is None:
                primary_email = email
            keeper = kept.get(email)
            if keeper is None:
                kept[email] = {
                    "id": contact["id"],
                    "name": contact["name"],
                    # as the contact is once moved: not primary
                    "was": (contact["name"], contact["is_primary"] and customer_id == request.survivor_id),
                }
                if customer_id != request.survivor_id:
                    plan.moved_contacts.append(contact["id"])
            else:
                if keeper["name"] is None:
                    keeper["name"] = contact["name"]
                plan.dropped_contacts.append(contact["id"])
    for email, keeper in kept.items():
        now = (keeper["name"], email == primary_email)
        if now != keeper["was"]:
            plan.changed_contacts.append((keeper["id"], *now))
    return plan


def _check_request(request: MergeRequest) -> None:
    errors = []
    if request.survivor_id in request.merged_ids:
        errors.append({"field": "merged_ids", "reason": "must not contain the survivor"})
    if len(set(request.merged_ids)) != len(request.merged_ids):
        errors.append({"field": "merged_ids", "reason": "names a customer twice"})
    involved = {request.survivor_id, *request.merged_ids}
    errors += [
        {"field": f"pick.{name}", "reason": "names a customer outside the merge"}
        for name, customer_id in request.pick.items()
        if customer_id not in involved
    ]
    if errors:
        raise ValidationFailed(errors)


async def merge_customers(
    session: AsyncSession, org_id: OrgId, request: MergeRequest, *, actor: Actor, request_id: str | None
) -> MergeResult:
    """Merge `merged_ids` into the survivor in the caller's transaction; a dry run writes nothing."""
    _check_request(request)
    conn = await driver_connection(session)
    await wait_for_org_imports(conn, org_id)
    ids = [request.survivor_id, *request.merged_ids]
    rows = await repository.lock_customers(conn, org_id, ids)
    for index, customer_id in enumerate(ids):
        if customer_id not in rows:
            raise customer_not_found()
        if rows[customer_id]["merged_into"] is not None:
            where = "survivor_id" if index == 0 else f"merged_ids.{index - 1}"
            raise ValidationFailed.one(
                where, f"customer {customer_id} is merged into {rows[customer_id]['merged_into']}"
            )
    plan = united_contacts(await repository.select_contacts(conn, org_id, ids), request)
    fields = merged_fields({i: _fields(row) for i, row in rows.items()}, request)
    merge_id = uuid.uuid4()
    if not request.dry_run:
        await _write(session, conn, org_id, merge_id, request, fields, plan, actor, request_id)
        document = await get_customer(session, org_id, request.survivor_id)
        return MergeResult(merge_id=merge_id, customer=document.customer, merged_ids=request.merged_ids, dry_run=False)
    # Exactly what the merge would write, read back, then rolled back.
    savepoint = await session.begin_nested()
    try:
        await _write(session, conn, org_id, merge_id, request, fields, plan, actor, request_id)
        document = await get_customer(session, org_id, request.survivor_id)
    finally:
        await savepoint.rollback()
    return MergeResult(merge_id=None, customer=document.customer, merged_ids=request.merged_ids, dry_run=True)


async def _write(
    session: AsyncSession,
    conn: asyncpg.Connection,
    org_id: OrgId,
    merge_id: uuid.UUID,
    request: MergeRequest,
    fields: dict[str, Any],
    plan: ContactPlan,
    actor: Actor,
    request_id: str | None,
) -> None:
    """The merge's statements, in the order its history needs (contacts leave before their customer)."""
    await record_changes_as(session, actor, "merge", request_id=request_id, merge_id=merge_id)
    survivor, merged = request.survivor_id, request.merged_ids
    await repository.insert_merge(conn, org_id, merge_id, survivor, merged)
    await repository.delete_contacts(conn, org_id, plan.dropped_contacts)
    await repository.move_contacts(conn, org_id, survivor, plan.moved_contacts)
    await repository.set_contacts(conn, org_id, plan.changed_contacts)
    await repository.make_tombstones(conn, org_id, survivor, merged)
    await repository.update_survivor(conn, org_id, survivor, fields)
    await repository.note_survivor_merged(conn, org_id, survivor, merged)


async def undo_merge(
    session: AsyncSession, org_id: OrgId, merge_id: uuid.UUID, *, actor: Actor, request_id: str | None
) -> UndoResult:
    """Every customer and contact of the merge back as it was; 409 when that would overwrite a later change."""
    conn = await driver_connection(session)
    await wait_for_org_imports(conn, org_id)
    merge = await repository.lock_merge(conn, org_id, merge_id)
    if merge is None:
        raise NotFound("No such merge")
    survivor_id: uuid.UUID = merge["survivor_id"]
    merged_ids: list[uuid.UUID] = list(merge["merged_ids"])

    def conflict(reason: str) -> Conflict:
        return Conflict(f"This merge cannot be undone: {reason}", "merge_id", survivor_id)

    if merge["undone_at"] is not None:
        raise conflict("it was undone already")
    rows = await repository.lock_customers(conn, org_id, [survivor_id, *merged_ids])
    if survivor_id not in rows:
        raise conflict("the survivor was deleted since")
    if rows[survivor_id]["merged_into"] is not None:
        raise conflict("the survivor was merged into another customer since")
    if any(rows.get(i) is None or rows[i]["merged_into"] != survivor_id for i in merged_ids):
        raise conflict("a merged customer is gone")
    if await repository.changed_since_merge(conn, org_id, survivor_id, merge["txid"]):
        raise conflict("the survivor or its contacts changed since")
    await record_changes_as(session, actor, "merge", request_id=request_id, merge_id=merge_id)
    # The survivor first: it gives up the aliases that the merged customers take back as their numbers.
    await repository.restore_customers(conn, org_id, merge["customers"], [survivor_id])
    await repository.restore_customers(conn, org_id, merge["customers"], merged_ids)
    await repository.restore_contacts(conn, org_id, survivor_id, merge["contacts"])
    await repository.mark_undone(conn, org_id, merge_id)
    documents = [await get_customer(session, org_id, i) for i in (survivor_id, *merged_ids)]
    return UndoResult(customers=[d.customer for d in documents])
