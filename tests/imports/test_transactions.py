"""One transaction per import: concurrency between imports, and failures in the middle leaving nothing behind."""

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Db, OrgContext, Server, create_customer, make_org
from tests.customers.helpers import add_contact, run_together
from tests.imports.helpers import blocked_by, count_customers, csv_of, customer_row, import_ok, post_csv, snapshot


def many_rows(count: int, prefix: str, **cells: str) -> str:
    rows = []
    for number in range(count):
        row = customer_row(f"{prefix}-{number // 2}", name=f"Kunde {number // 2} GmbH", **cells)
        row["contact_email"] = f"k{number}@{prefix.lower()}-{number // 2}.de"
        rows.append(row)
    return csv_of(rows)


def test_imports_into_different_orgs_run_side_by_side(server: Server, db: Db) -> None:
    orgs = [make_org(db), make_org(db)]
    content = many_rows(2_000, "SBS")

    reports = run_together(server.base_url, 2, lambda http, index: import_ok(http, orgs[index], content))

    for org, report in zip(orgs, reports, strict=True):
        assert (report["imported"], report["contacts_created"], report["failed"]) == (1_000, 2_000, 0)
        assert count_customers(db, org) == 1_000


def test_two_imports_into_one_org_neither_deadlock_nor_duplicate(server: Server, db: Db, org: OrgContext) -> None:
    content = many_rows(2_000, "ONE")

    reports = run_together(server.base_url, 2, lambda http, _: import_ok(http, org, content))

    # One ran first and created everything; the other waited for it, then found everything unchanged.
    assert sorted((r["imported"], r["unchanged"]) for r in reports) == [(0, 1_000), (1_000, 0)]
    assert count_customers(db, org) == 1_000
    (contacts,) = db.fetch("SELECT count(*) FROM customer_contact WHERE org_id = :org", org=org.id)
    assert contacts[0] == 2_000


def test_overlapping_imports_into_one_org_each_apply_completely(server: Server, db: Db, org: OrgContext) -> None:
    files = [
        csv_of([customer_row(f"OV-{n}", billing_city="Aachen", contact_email=f"a@ov{n}.de") for n in range(0, 600)]),
        csv_of([customer_row(f"OV-{n}", billing_city="Bremen", contact_email=f"b@ov{n}.de") for n in range(300, 900)]),
    ]

    reports = run_together(server.base_url, 2, lambda http, index: import_ok(http, org, files[index]))

    assert sum(report["imported"] for report in reports) == 900
    assert sorted(report["updated"] for report in reports) == [0, 300]
    assert count_customers(db, org) == 900
    cities = db.fetch(
        "SELECT billing_address_json->>'city', count(*) FROM customer WHERE org_id = :org GROUP BY 1", org=org.id
    )
    assert sum(count for _, count in cities) == 900


@pytest.fixture
def exploding_contact(db: Db) -> Any:
    """A trigger that fails the statement inserting or updating one particular contact e-mail."""
    db.execute(
        """CREATE OR REPLACE FUNCTION test_explode() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NEW.email = 'boom@explode.de' THEN RAISE EXCEPTION 'injected failure'; END IF;
             RETURN NEW;
           END $$"""
    )
    db.execute(
        "CREATE TRIGGER test_explode BEFORE INSERT OR UPDATE ON customer_contact"
        " FOR EACH ROW EXECUTE FUNCTION test_explode()"
    )
    yield
    db.execute("DROP TRIGGER test_explode ON customer_contact")
    db.execute("DROP FUNCTION test_explode()")


def _existing_data(client: httpx.Client, org: OrgContext) -> str:
    """Two customers, F-1 with a contact; F-1's id."""
    kept = create_customer(client, org, erp_customer_number="F-1", name="Vorher GmbH")
    add_contact(client, org, kept["id"], email="alt@f1.de", is_primary=True)
    create_customer(client, org, erp_customer_number="F-2", name="Auch vorher GmbH")
    kept_id: str = kept["id"]
    return kept_id


@pytest.mark.usefixtures("exploding_contact")
def test_a_database_error_in_the_middle_leaves_the_database_as_it_was(
    client: httpx.Client, db: Db, org: OrgContext
) -> None:
    _existing_data(client, org)
    before = snapshot(db, org)
    rows = [customer_row("F-1", name="Nachher GmbH", contact_email="neu@f1.de", contact_is_primary="ja")]
    rows += [customer_row(f"F-new-{n}", contact_email=f"x@new{n}.de") for n in range(500)]
    rows += [customer_row("F-2", name="Geändert", contact_email="boom@explode.de")]

    response = post_csv(client, org, csv_of(rows))

    assert response.status_code == 500, response.text
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
    assert snapshot(db, org) == before
    assert client.get("/api/v1/imports", headers=org.headers()).json()["items"] == []
    assert import_ok(client, org, csv_of(rows[:-1]))["imported"] == 500, "the next import works"


def test_a_connection_killed_in_the_middle_leaves_the_database_as_it_was(
    server: Server, client: httpx.Client, db: Db, org: OrgContext
) -> None:
    kept = _existing_data(client, org)
    before = snapshot(db, org)
    first = csv_of([customer_row("F-1", name="Nachher GmbH", contact_email="neu@f1.de")])
    content = first + many_rows(2_000, "KILL").split("\n", 1)[1]

    def post() -> httpx.Response:
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            return post_csv(http, org, content)

    async def kill_the_import_in_the_middle() -> httpx.Response:
        """The test holds F-1's row lock (FOR NO KEY UPDATE: the contacts' foreign-key checks would pass it),
        so the import stages the file, takes the org's lock, inserts the 1,000 new customers, and then waits
        to update F-1. Its connection is killed while it waits; the row is let go once it is gone."""
        holder = await asyncpg.connect(db.database.url)
        monitor = await asyncpg.connect(db.database.url)
        try:
            async with holder.transaction():
                await holder.execute("SELECT FROM customer WHERE id = $1 FOR NO KEY UPDATE", uuid.UUID(kept))
                request = asyncio.create_task(asyncio.to_thread(post))
                waiting = await blocked_by(monitor, holder.get_server_pid(), request)
                assert len(waiting) == 1, "the import ended without waiting for F-1"
                (importer,) = waiting
                query = await monitor.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", importer)
                assert "UPDATE customer " in query, query  # merging: past staging and the new customers
                assert await monitor.fetchval("SELECT pg_terminate_backend($1, 10000)", importer)
            return await request
        finally:
            await holder.close()
            await monitor.close()

    response = db.run(kill_the_import_in_the_middle())

    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert snapshot(db, org) == before
    assert client.get("/api/v1/imports", headers=org.headers()).json()["items"] == []
    assert import_ok(client, org, csv_of([customer_row("F-1", name="Nachher GmbH")]))["updated"] == 1
