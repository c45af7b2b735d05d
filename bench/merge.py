"""Merge benchmark (issue 12): a big merge, its undo, and what merging duplicates does to detection.

In one run, on a fresh database (the embedded PostgreSQL in a throw-away directory, or a new database on
the server of `DATABASE_URL`), migrated as `customer-master migrate` does:

1. **A big merge**: a survivor and 50 customers with 200 contacts between them (some e-mails on several of
   them, so contacts are united, names filled, one primary chosen) merged by the service in one
   transaction (`merge.service.merge_customers`, as the API calls it, history and all), then undone.
   Wall and CPU time of each, best of `--runs` (each run on fresh customers); and whether undo gives back
   every customer document byte for byte except `updated_at`.
2. **Detection before and after merging duplicates**: `--groups` groups of 2–4 customers that are one
   company (each has a contact with the same order e-mail, other names and ERP numbers), among
   `--background` other customers. Detection by that sender e-mail is `AMBIGUOUS` for every group (two or
   more S1 candidates at 0.95); each group is merged into its first customer; detection again, by the
   e-mail and by a merged customer's old ERP number (S4 through the alias). Counts of each status.

    .venv/bin/python bench/merge.py
    .venv/bin/python bench/merge.py --runs 5 --groups 500 --background 20000
"""

import argparse
import asyncio
import json
import os
import platform
import resource
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import release_bench_database
from customer_master.auth import service as auth_service
from customer_master.auth.tenancy import OrgId
from customer_master.customers.service import get_customer
from customer_master.db.embedded import ensure_database, start_embedded_server
from customer_master.db.migrate import upgrade_to_head
from customer_master.db.session import Database, driver_connection
from customer_master.detection import service as detection_service
from customer_master.detection.schemas import DetectRequest
from customer_master.history.context import Actor
from customer_master.merge import service as merge_service
from customer_master.merge.schemas import MergeRequest

ACTOR = Actor.command("bench")

INSERT_CUSTOMERS = """
INSERT INTO customer (id, org_id, name, erp_customer_number, default_currency, default_language,
                      billing_address_json, metadata_json)
SELECT id, $1, name, erp, 'EUR', 'de-DE', jsonb_build_object('street', 'Ring 1', 'street2', NULL, 'city', 'Köln',
                                                           'postal_code', '50667', 'state', NULL, 'country', 'DE'),
       jsonb_build_object('group', name)
  FROM unnest($2::uuid[], $3::text[], $4::text[]) AS c (id, name, erp)
"""

INSERT_CONTACTS = """
INSERT INTO customer_contact (org_id, customer_id, email, name, is_primary)
SELECT $1, customer_id, email, name, is_primary
  FROM unnest($2::uuid[], $3::text[], $4::text[], $5::boolean[]) AS c (customer_id, email, name, is_primary)
"""


def cpu_s() -> float:
    """This process's CPU seconds (the service's Python; PostgreSQL's share is the rest of the wall time)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def insert(
    database: Database,
    org_id: OrgId,
    customers: list[tuple[uuid.UUID, str, str]],
    contacts: list[tuple[uuid.UUID, str, str | None, bool]],
) -> None:
    async with database.transaction() as session:
        conn = await driver_connection(session)
        ids, names, erps = (list(column) for column in zip(*customers, strict=True))
        await conn.execute(INSERT_CUSTOMERS, org_id, ids, names, erps)
        if contacts:
            columns = [list(column) for column in zip(*contacts, strict=True)]
            await conn.execute(INSERT_CONTACTS, org_id, *columns)


async def documents(database: Database, org_id: OrgId, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    def without_updated_at(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: without_updated_at(v) for k, v in value.items() if k != "updated_at"}
        if isinstance(value, list):
            return [without_updated_at(v) for v in value]
        return value

    async with database.transaction() as session:
        return [without_updated_at(json.loads((await get_customer(session, org_id, i)).body)) for i in ids]


async def big_merge(database: Database, org_id: OrgId, run: int) -> dict[str, Any]:
    """A survivor and 50 customers with 200 contacts merged, then undone; times and the undo's fidelity."""
    survivor = uuid.uuid4()
    merged = [uuid.uuid4() for _ in range(50)]
    customers = [(survivor, f"Groß Handel {run} GmbH", f"R{run}-S")]
    customers += [(m, f"Groß Handel {run} Filiale {i}", f"R{run}-{i}") for i, m in enumerate(merged)]
    contacts: list[tuple[uuid.UUID, str, str | None, bool]] = [
        (survivor, f"zentrale@gross{run}.de", None, False),
    ]
    for i, m in enumerate(merged):
        contacts += [
            (m, f"filiale{i}@gross{run}.de", f"Filiale {i}", True),
            (m, f"lager{i}@gross{run}.de", None, False),
            (m, f"zentrale@gross{run}.de", f"Zentrale {i}", False),  # on every one: united into one
            (m, f"einkauf{i % 10}@gross{run}.de", f"Einkauf {i}", False),  # on five each
        ]
    await insert(database, org_id, customers, contacts)
    before = await documents(database, org_id, [survivor, *merged])

    cpu, wall = cpu_s(), time.perf_counter()
    async with database.transaction() as session:
        result = await merge_service.merge_customers(
            session,
            org_id,
            MergeRequest(survivor_id=survivor, merged_ids=merged),
            actor=ACTOR,
            request_id=None,
        )
    merge_wall, merge_cpu = time.perf_counter() - wall, cpu_s() - cpu
    assert result.merge_id is not None

    cpu, wall = cpu_s(), time.perf_counter()
    async with database.transaction() as session:
        await merge_service.undo_merge(session, org_id, result.merge_id, actor=ACTOR, request_id=None)
    undo_wall, undo_cpu = time.perf_counter() - wall, cpu_s() - cpu
    after = await documents(database, org_id, [survivor, *merged])
    return {
        "contacts": len(contacts),
        "contacts_after_merge": len(result.customer.contacts),
        "merge_s": merge_wall,
        "merge_cpu_s": merge_cpu,
        "undo_s": undo_wall,
        "undo_cpu_s": undo_cpu,
        "undo_identical": after == before,
    }


async def detection_counts(database: Database, org_id: OrgId, requests: list[DetectRequest]) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with database.transaction() as session:
        for request in requests:
            status = (await detection_service.detect_customer(session, org_id, request)).status
            counts[status.value] = counts.get(status.value, 0) + 1
    return counts


async def merging_duplicates(database: Database, org_id: OrgId, groups: int, background: int) -> dict[str, Any]:
    """Detection by the groups' order e-mails before and after each group is merged into its first customer."""
    customers: list[tuple[uuid.UUID, str, str]] = []
    contacts: list[tuple[uuid.UUID, str, str | None, bool]] = []
    for i in range(background):
        customer_id = uuid.uuid4()
        customers.append((customer_id, f"Hintergrund {i} KG", f"H-{i}"))
        contacts.append((customer_id, f"info@hintergrund{i}.de", None, True))
    members: list[list[uuid.UUID]] = []
    for g in range(groups):
        group = [uuid.uuid4() for _ in range(2 + g % 3)]
        members.append(group)
        for k, customer_id in enumerate(group):
            customers.append((customer_id, f"Doppel {g} {'GmbH' if k % 2 else 'AG'}", f"D-{g}-{k}"))
            contacts.append((customer_id, f"bestellung@doppel{g}.de", None, k == 0))
    await insert(database, org_id, customers, contacts)
    by_email = [DetectRequest(from_email=f"bestellung@doppel{g}.de") for g in range(groups)]
    by_old_number = [DetectRequest(document_text=f"Bestellung\nKundennr.: D-{g}-1\n") for g in range(groups)]
    before = await detection_counts(database, org_id, by_email)

    times = []
    for group in members:
        started = time.perf_counter()
        async with database.transaction() as session:
            await merge_service.merge_customers(
                session, org_id, MergeRequest(survivor_id=group[0], merged_ids=group[1:]), actor=ACTOR, request_id=None
            )
        times.append(time.perf_counter() - started)
    after = await detection_counts(database, org_id, by_email)
    after_number = await detection_counts(database, org_id, by_old_number)
    times.sort()
    return {
        "before": before,
        "after": after,
        "after_by_old_number": after_number,
        "merge_p50_ms": statistics.median(times) * 1000,
        "merge_p95_ms": times[int(len(times) * 0.95) - 1] * 1000,
    }


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cm-bench-merge-"))
    name = f"cm_bench_merge_{secrets.token_hex(3)}"
    admin_url = os.environ.get("DATABASE_URL") or await asyncio.to_thread(start_embedded_server, workdir)
    url = await ensure_database(admin_url, name)
    try:
        await asyncio.to_thread(upgrade_to_head, url)
        database = Database(url, pool_size=2)
        try:
            async with database.transaction() as session:
                org = await auth_service.create_org(session, "bench", "Bench")
            org_id = OrgId(org.id)
            print(f"machine: {platform.node()}, {os.cpu_count()} CPUs; Python {platform.python_version()}")
            runs = [await big_merge(database, org_id, run) for run in range(args.runs)]
            for run in runs:
                print(
                    f"merge 1+50 customers, {run['contacts']} contacts → {run['contacts_after_merge']}:"
                    f" {run['merge_s'] * 1000:.0f} ms (CPU {run['merge_cpu_s'] * 1000:.0f} ms);"
                    f" undo {run['undo_s'] * 1000:.0f} ms (CPU {run['undo_cpu_s'] * 1000:.0f} ms);"
                    f" undo byte-identical but updated_at: {run['undo_identical']}"
                )
            best = min(runs, key=lambda run: run["merge_s"])
            print(
                f"best of {args.runs}: merge {best['merge_s'] * 1000:.0f} ms,"
                f" undo {min(r['undo_s'] for r in runs) * 1000:.0f} ms;"
                f" every undo identical: {all(r['undo_identical'] for r in runs)}"
            )
            detection = await merging_duplicates(database, org_id, args.groups, args.background)
            print(
                f"detection by the order e-mail of {args.groups} duplicate groups,"
                f" before merging: {detection['before']}"
            )
            print(
                f"after merging each group (p50 {detection['merge_p50_ms']:.0f} ms,"
                f" p95 {detection['merge_p95_ms']:.0f} ms a merge): by e-mail {detection['after']},"
                f" by a merged customer's old number"
                f" {detection['after_by_old_number']}"
            )
        finally:
            await database.dispose()
    finally:
        await release_bench_database(admin_url, name, workdir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="big merges (each on fresh customers)")
    parser.add_argument("--groups", type=int, default=300, help="groups of duplicates for the detection part")
    parser.add_argument("--background", type=int, default=10_000, help="other customers beside them")
    asyncio.run(main(parser.parse_args()))
