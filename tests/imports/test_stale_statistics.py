"""An import takes time in proportion to its rows whatever PostgreSQL's statistics say (issue 9).

After `DELETE` + `ANALYZE` the statistics say `customer` and `customer_contact` are empty while their pages
are still there: the planner then expects no rows whatever the tables hold, and the contacts' foreign-key
check (one lookup by (org_id, id) per contact) walked the org's whole range of another index for every
contact — quadratic: 100,000 rows ran for many minutes; 15,000 rows here spent 25–30 s in the one statement
that inserts the contacts, where a healthy import of them takes ~5 s and none of its statements more than ~2 s.

Each test has a database of its own (the session's database is shared, and its table-wide statistics
include every other test's orgs), with autovacuum off for the two tables, so that no `VACUUM` gives the
pages back in the middle (which makes the statistics harmless again). The guard is a statement timeout on
the import's own transaction: a degenerate plan fails the test instead of hanging it.
"""

import io

import asyncpg
import pytest
from sqlalchemy import text

from customer_master.auth import service as auth_service
from customer_master.auth.tenancy import OrgId
from customer_master.db.migrate import upgrade_to_head
from customer_master.db.session import Database
from customer_master.imports.schemas import ImportReport
from customer_master.imports.service import ImportSource, import_customers_csv
from tests.conftest import in_own_thread, run_async

# A customer and a contact per row. The cost of the degenerate plan grows with the square of the rows, a
# healthy import's linearly: 5,000 rows cost ~1 s more, too little to tell from load; 10,000 rows ~12 s in one
# statement, twice the guard; 15,000 rows (the size chosen) 25–30 s, four times the guard, while no
# statement of the fixed import takes more than ~1.7 s, a quarter of it (2 shared cores, under load).
ROWS = 15_000
GUARD = "7s"
HEADER = "name,erp_customer_number,default_currency,default_language,contact_email,contact_name\n"


def rows_csv(numbers: range, email: str = "einkauf") -> bytes:
    return (
        HEADER
        + "".join(f"Firma {n} GmbH,T{n:06d},EUR,de-DE,{email}@firma-{n}.example.com,Kontakt {n}\n" for n in numbers)
    ).encode()


@pytest.fixture
def fresh_database_url(scratch_database: str) -> str:
    in_own_thread(upgrade_to_head, scratch_database)
    return scratch_database


async def _prepare(url: str) -> tuple[Database, asyncpg.Connection, OrgId]:
    admin = await asyncpg.connect(url)
    for table in ("customer", "customer_contact"):
        await admin.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
    database = Database(url, pool_size=1)
    async with database.transaction() as session:
        org_id = OrgId((await auth_service.create_org(session, "stale-stats", "Stale statistics")).id)
    return database, admin, org_id


async def _import(database: Database, org_id: OrgId, content: bytes, guard: str | None = None) -> ImportReport:
    async with database.transaction() as session:
        if guard:
            await session.execute(text(f"SET LOCAL statement_timeout = '{guard}'"))
        return await import_customers_csv(
            session,
            org_id,
            io.BytesIO(content),
            ImportSource(kind="cli", file_name="kunden.csv"),
            dry_run=False,
            max_line_length=1_048_576,
        )


async def _empty_statistics_with_pages(database: Database, admin: asyncpg.Connection, org_id: OrgId) -> None:
    """A first import, all of it deleted, statistics refreshed: they say empty, the pages remain."""
    await _import(database, org_id, rows_csv(range(1, 101)))
    await admin.execute("DELETE FROM customer WHERE org_id = $1", org_id)
    await admin.execute("ANALYZE customer, customer_contact")
    for table in ("customer", "customer_contact"):
        reltuples, relpages = await admin.fetchrow("SELECT reltuples, relpages FROM pg_class WHERE relname = $1", table)
        assert (reltuples, relpages > 0) == (0, True), table


def test_an_import_after_delete_and_analyze_takes_time_in_proportion_to_its_rows(fresh_database_url: str) -> None:
    async def scenario() -> None:
        database, admin, org_id = await _prepare(fresh_database_url)
        try:
            await _empty_statistics_with_pages(database, admin, org_id)

            report = await _import(database, org_id, rows_csv(range(1, ROWS + 1)), guard=GUARD)

            assert (report.rows, report.imported, report.contacts_created, report.failed) == (ROWS, ROWS, ROWS, 0)
            # And the next import finds statistics that know the rows (here: the same file, all unchanged).
            again = await _import(database, org_id, rows_csv(range(1, ROWS + 1)), guard=GUARD)
            assert (again.unchanged, again.contacts_created) == (ROWS, 0)
        finally:
            await admin.close()
            await database.dispose()

    run_async(scenario())


def test_an_import_into_an_org_whose_rows_the_statistics_do_not_know_yet(fresh_database_url: str) -> None:
    """Rows written after the statistics were taken (another import, the API, a restore): a new contact for
    each existing customer means one foreign-key lookup per contact, and no new customer in between."""

    async def scenario() -> None:
        database, admin, org_id = await _prepare(fresh_database_url)
        try:
            await _empty_statistics_with_pages(database, admin, org_id)
            await admin.execute(
                """INSERT INTO customer (org_id, name, erp_customer_number, default_currency, default_language)
                   SELECT $1, 'Firma ' || n || ' GmbH', 'T' || lpad(n::text, 6, '0'), 'EUR', 'de-DE'
                     FROM generate_series(1, $2) AS n""",
                org_id,
                ROWS,
            )

            report = await _import(database, org_id, rows_csv(range(1, ROWS + 1), email="buchhaltung"), guard=GUARD)

            assert (report.rows, report.updated, report.contacts_created, report.failed) == (ROWS, ROWS, ROWS, 0)
        finally:
            await admin.close()
            await database.dispose()

    run_async(scenario())
