"""The CSV import of API.md §6, in one transaction, set-based: the steps in order, and the rules.

1. Stream the file (`reader.py`), validate each row with the API's rules (`rows.py`) in a worker thread,
   and `COPY` the valid rows in batches into a temporary staging table (`staging.py`). Contact e-mails are
   checked per batch, each distinct cell once (`emails.py`); rows whose e-mail fails leave staging before
   anything is applied.
2. Take the org's import lock (`pg_advisory_xact_lock`): imports into one org run one at a time, the
   second waiting for the first; imports into different orgs run side by side.
3. Group the rows by ERP number (the last non-empty cell wins per field), each group matched to the
   customer of that number or of which it is an ERP alias (a merge's survivor; groups of several numbers
   of one customer made one), then a handful of set-based
   statements (`upsert_sql.py`): insert new customers, update matched ones only where a value
   `IS DISTINCT FROM` the stored one (so an unchanged customer is not written and keeps `updated_at`),
   un-mark replaced primary contacts, update and insert contacts.
   Where PostgreSQL's statistics say `customer` or `customer_contact` holds far fewer rows than the org alone
   has in it (taken while it was empty), they are refreshed first: with them, a lookup by key per row (the
   contacts' foreign-key check) can turn into a scan of the org per row (`stale_statistics.py`).
4. Count, warn (`report.py`), record the `import_run` (`runs.py`). A dry run does all of it inside a
   savepoint that it rolls back, so its report is the real run's report and nothing stays written (except
   its `import_run`).
"""

import time
import uuid
from datetime import datetime
from functools import partial
from typing import Any, BinaryIO

import asyncpg
from anyio import to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import OrgId
from customer_master.history.context import record_changes_as
from customer_master.imports import runs, staging, upsert_sql
from customer_master.imports.emails import EmailCheck
from customer_master.imports.reader import CsvReader, ensure_field_size_limit
from customer_master.imports.report import Applied, build_report, duplicate_erp_warnings, missing_erp_warning
from customer_master.imports.rows import RowValidator, parse_header
from customer_master.imports.runs import ImportSource
from customer_master.imports.schemas import ImportReport, ImportRunOut, ImportWarning
from customer_master.imports.staging import Progress, Staged
from customer_master.imports.stale_statistics import refresh_stale_statistics
from customer_master.metrics import IMPORT_ROWS

__all__ = ["ImportSource", "Progress", "import_customers_csv", "list_import_runs"]


async def import_customers_csv(
    session: AsyncSession,
    org_id: OrgId,
    file: BinaryIO,
    source: ImportSource,
    *,
    dry_run: bool,
    max_line_length: int,
    progress: Progress | None = None,
) -> ImportReport:
    """Import one CSV file into the org in the session's transaction; the report of API.md §6.

    A file that cannot be read as CSV raises `FileRejected` (422) before anything is written.
    """
    started = time.monotonic()
    ensure_field_size_limit(max_line_length)
    reader = await to_thread.run_sync(partial(CsvReader, file, max_line_length=max_line_length))
    validator = RowValidator(parse_header(reader.header, reader.header_line_number), defer_email=True)
    run_id = uuid.uuid4()
    await record_changes_as(session, source.actor, "import", request_id=source.request_id, import_id=run_id)
    conn = await staging.driver_in_transaction(session)
    if dry_run:
        await runs.start_dry_run(conn)
    staged = await _stage(conn, org_id, reader, validator, progress)
    applied = await _apply(conn, org_id)
    if dry_run:
        await runs.roll_back_dry_run(conn)
    report = build_report(reader, validator, staged, applied, dry_run, import_id=run_id)
    await runs.record_run(conn, org_id, run_id, source, report, duration_ms=int((time.monotonic() - started) * 1000))
    if not dry_run:
        for outcome, count in applied.row_outcomes.items():
            IMPORT_ROWS.labels(outcome).inc(count)
        IMPORT_ROWS.labels("failed").inc(report.failed)
    return report


async def list_import_runs(
    session: AsyncSession, org_id: OrgId, *, limit: int, after: tuple[datetime, uuid.UUID] | None = None
) -> list[ImportRunOut]:
    """The org's imports, newest first; `after` continues behind the last one of a previous page."""
    return await runs.select_import_runs(session, org_id, limit=limit, after=after)


# --- 1. staging -----------------------------------------------------------------------------------


async def _stage(
    conn: asyncpg.Connection,
    org_id: OrgId,
    reader: CsvReader,
    validator: RowValidator,
    progress: Progress | None,
) -> Staged:
    """The file's valid rows in staging; the e-mails the rule rewrites rewritten, those it rejects gone."""
    await staging.set_work_table_settings(conn)
    await staging.create_staging_table(conn)
    # Before anything reads the org's rows (the grouping, the foreign-key checks).
    await refresh_stale_statistics(conn, org_id, "customer", "customer_contact")
    emails = EmailCheck()
    staged = await staging.copy_valid_rows(conn, reader, validator, emails, progress)
    await staging.apply_email_problems(conn, staged, emails.problems)
    await staging.analyze_staging_table(conn)
    return staged


# --- 2./3. the set-based apply --------------------------------------------------------------------


async def _apply(conn: asyncpg.Connection, org_id: OrgId) -> Applied:
    # Under the lock, so a second import into this org sees everything the first one wrote.
    await upsert_sql.lock_org_imports(conn, org_id)
    await upsert_sql.create_customer_groups(conn)
    await upsert_sql.group_rows_into_customers(conn, org_id)
    errors, failed_rows = await _drop_incomplete_new_customers(conn)
    await upsert_sql.analyze_customer_groups(conn)
    new, matched, by_alias = await upsert_sql.count_new_and_matched_customers(conn)
    adopted = 0
    if new:
        if await upsert_sql.insert_new_customers(conn, org_id) < new:
            adopted = await upsert_sql.adopt_customers_created_meanwhile(conn, org_id)
            matched += adopted
        # Before the contacts' foreign-key checks, one lookup by (org_id, id) for each contact written.
        await refresh_stale_statistics(conn, org_id, "customer")
    if by_alias or adopted:
        # Only then can two groups match one customer (its number and an alias of it, or a number adopted
        # from a customer that was renumbered meanwhile).
        await upsert_sql.unite_groups_of_one_customer(conn)
    await upsert_sql.create_touched(conn)
    if matched:
        # Whatever the planner believes about `customer` (its statistics may predate a large import, or
        # the org may be new to them), a join to an indexed work table never turns into repeated scans.
        await upsert_sql.index_customer_groups(conn)
        await upsert_sql.update_matched_customers(conn, org_id)
    await upsert_sql.create_contact_groups(conn)
    await upsert_sql.group_rows_into_contacts(conn)
    if matched:
        await upsert_sql.index_contact_groups(conn)
    await upsert_sql.analyze_contact_groups(conn)
    multi_primary = await upsert_sql.keep_last_primary_per_customer(conn)
    if matched:
        await upsert_sql.unmark_replaced_primaries(conn, org_id)
        await upsert_sql.update_matched_contacts(conn, org_id)
    await upsert_sql.insert_new_contacts(conn, org_id)

    await upsert_sql.analyze_touched(conn)
    customers = await upsert_sql.count_customers_by_outcome(conn)
    contacts = await upsert_sql.count_contact_changes(conn)
    warnings = await _duplicate_warnings(conn, multi_primary)
    warnings += missing_erp_warning(await upsert_sql.rows_without_erp_number(conn))

    def count(outcome: str) -> int:
        return customers[outcome]["customers"] if outcome in customers else 0

    return Applied(
        imported=count("imported"),
        updated=count("updated"),
        unchanged=count("unchanged"),
        contacts_created=contacts["created"],
        contacts_updated=contacts["updated"],
        row_outcomes={outcome: row["rows"] for outcome, row in customers.items()},
        errors=errors,
        failed_rows=failed_rows,
        warnings=warnings,
    )


async def _drop_incomplete_new_customers(conn: asyncpg.Connection) -> tuple[list[dict[str, Any]], set[int]]:
    """A new customer needs name, currency and language in some row; else each of its rows fails."""
    incomplete = await upsert_sql.new_customers_missing_required(conn)
    if not incomplete:
        return [], set()
    missing_by_erp: dict[str, list[str]] = {}
    errors: list[dict[str, Any]] = []
    rows_without_erp: list[int] = []
    for group in incomplete:
        missing = [
            column
            for column, is_missing in zip(
                ("name", "default_currency", "default_language"), tuple(group)[2:], strict=True
            )
            if is_missing
        ]
        if group["erp_customer_number"] is None:
            rows_without_erp.append(group["first_row"])
            errors.extend(_missing_errors(group["first_row"], missing))
        else:
            missing_by_erp[group["erp_customer_number"]] = missing
    failed_rows = set(rows_without_erp)
    if missing_by_erp:
        for row in await upsert_sql.row_numbers_of_erp_numbers(conn, list(missing_by_erp)):
            failed_rows.add(row["row_no"])
            errors.extend(_missing_errors(row["row_no"], missing_by_erp[row["erp_customer_number"]]))
    await upsert_sql.drop_staged_rows(conn, list(failed_rows))
    await upsert_sql.drop_new_customer_groups(conn, rows_without_erp, list(missing_by_erp))
    return errors, failed_rows


def _missing_errors(row: int, columns: list[str]) -> list[dict[str, Any]]:
    return [
        {"row": row, "field": column, "value": "", "error": f"Missing required field: {column}"} for column in columns
    ]


async def _duplicate_warnings(conn: asyncpg.Connection, multi_primary: set[uuid.UUID]) -> list[ImportWarning]:
    """One warning per ERP number (per customer, for several numbers of one) whose rows hold different
    non-empty values for a field."""
    suspects = await upsert_sql.erp_numbers_that_may_disagree(conn, multi_primary)
    if not suspects:
        return []
    return duplicate_erp_warnings(await upsert_sql.staged_rows_of_erp_numbers(conn, list(suspects)), suspects)
