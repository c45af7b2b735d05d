"""The CSV import of API.md §6, in one transaction, set-based.

1. Stream the file (`reader.py`), validate each row with the API's rules (`rows.py`) in a worker thread,
   and `COPY` the valid rows in batches into a temporary staging table. Contact e-mails are checked
   only when the org does not store them as written (`emails.py`); rows whose e-mail fails leave
   staging before anything is applied.
2. Take the org's import lock (`pg_advisory_xact_lock`): imports into one org run one at a time, the
   second waiting for the first; imports into different orgs run side by side.
3. Group the rows by ERP number (the last non-empty cell wins per field), then a handful of set-based
   statements: insert new customers, update matched ones only where a value `IS DISTINCT FROM` the
   stored one (so an unchanged customer is not written and keeps `updated_at`), un-mark replaced
   primary contacts, update and insert contacts.
   Where PostgreSQL's statistics say `customer` or `customer_contact` holds far fewer rows than the org alone
   has in it (taken while it was empty), they are refreshed first: with them, a lookup by key per row (the
   contacts' foreign-key check) can turn into a scan of the org per row (`_refresh_stale_statistics`).
4. Count, warn, record the `import_run`. A dry run does all of it inside a savepoint that it rolls
   back, so its report is the real run's report and nothing stays written (except its `import_run`).
"""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, BinaryIO, Literal

import asyncpg
from anyio import to_thread
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import OrgId, Principal
from customer_master.customers.schemas import ADDRESS_FIELDS
from customer_master.db.session import driver_connection
from customer_master.imports.emails import EmailCheck, Problem, load_known_emails
from customer_master.imports.reader import CsvReader, ensure_field_size_limit
from customer_master.imports.rows import (
    MERGED_COLUMNS,
    METADATA_PREFIX,
    STAGING_COLUMNS,
    RowValidator,
    parse_header,
)
from customer_master.imports.schemas import ImportReport, ImportRunOut, ImportWarning, RowError
from customer_master.metrics import IMPORT_ROWS

BATCH_ROWS = 5_000
# pg_advisory_xact_lock(IMPORT_LOCK_CLASS, hashtext(org id)): the per-org import lock. The two-key form
# lives apart from the single-bigint keys (the migration lock), so they never collide.
IMPORT_LOCK_CLASS = 47_110_002
WARNING_ROWS_IN_MESSAGE = 10
# A table's statistics are stale when the planner expects fewer than STALE_BELOW_ROWS rows in it and the
# org alone has more than STALE_RATIO times as many plus STALE_MIN_ROWS (`_refresh_stale_statistics`).
STALE_BELOW_ROWS = 100_000
STALE_RATIO = 4
STALE_MIN_ROWS = 1_000
# How long an import waits to analyze a table that someone else is analyzing or vacuuming (an autovacuum
# that blocks us gives way after `deadlock_timeout`, 1 s by default).
ANALYZE_LOCK_TIMEOUT = "2s"

# Receives (rows read so far, bytes read so far).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ImportSource:
    """Who imports which file, for the `import_run` record."""

    kind: Literal["api", "cli"]
    file_name: str | None = None
    user_id: uuid.UUID | None = None
    user_email: str | None = None
    token_id: uuid.UUID | None = None
    token_name: str | None = None

    @classmethod
    def from_principal(cls, principal: Principal, file_name: str | None) -> "ImportSource":
        return cls(
            kind="api",
            file_name=file_name,
            user_id=principal.user_id,
            user_email=principal.user_email,
            token_id=principal.token_id,
            token_name=principal.token_name,
        )


@dataclass
class _Staged:
    rows: int
    failed_rows: set[int]
    errors: list[dict[str, Any]]


@dataclass
class _Applied:
    imported: int
    updated: int
    unchanged: int
    contacts_created: int
    contacts_updated: int
    row_outcomes: dict[str, int]
    errors: list[dict[str, Any]]
    failed_rows: set[int]
    warnings: list[ImportWarning]


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
    conn = await _driver_in_transaction(session)
    if dry_run:
        await conn.execute("SAVEPOINT cm_import_dry_run")
    staged = await _stage(conn, org_id, reader, validator, progress)
    applied = await _apply(conn, org_id)
    if dry_run:
        await conn.execute("ROLLBACK TO SAVEPOINT cm_import_dry_run; RELEASE SAVEPOINT cm_import_dry_run")
    report = _report(reader, validator, staged, applied, dry_run)
    await _record_run(conn, org_id, source, report, duration_ms=int((time.monotonic() - started) * 1000))
    if not dry_run:
        for outcome, count in applied.row_outcomes.items():
            IMPORT_ROWS.labels(outcome).inc(count)
        IMPORT_ROWS.labels("failed").inc(report.failed)
    return report


async def _driver_in_transaction(session: AsyncSession) -> asyncpg.Connection:
    """The session's own asyncpg connection (COPY needs the driver), inside the session's transaction.

    A connection lost on it is the session's to handle (`Database.transaction`: a 503, the connection discarded).
    """
    # SQLAlchemy's adapter sends BEGIN lazily, with its first statement: send one, so that everything
    # done on the driver below belongs to the session's transaction.
    await (await session.connection()).exec_driver_sql("SELECT 1")
    driver = await driver_connection(session)
    assert driver.is_in_transaction(), "the import must run inside the session's transaction"
    return driver


# --- 1. staging -------------------------------------------------------------------------------

_STAGING_TYPES = {"row_no": "integer", "contact_is_primary": "boolean", "metadata": "jsonb"}
CREATE_STAGING = (
    "CREATE TEMPORARY TABLE cm_import_row ("
    + ", ".join(f"{column} {_STAGING_TYPES.get(column, 'text')}" for column in STAGING_COLUMNS)
    + ") ON COMMIT DROP"
)


async def _stage(
    conn: asyncpg.Connection,
    org_id: OrgId,
    reader: CsvReader,
    validator: RowValidator,
    progress: Progress | None,
) -> _Staged:
    """Read and check rows in a worker thread while the previous batch is being copied into staging.

    Contact e-mails are checked apart (`emails.py`): only those the org does not store as written. Rows
    whose e-mail fails leave staging before anything is applied.
    """
    # Sorts and hashes of 100k-row work tables in memory; small samples suffice for their statistics.
    await conn.execute("SET LOCAL work_mem = '64MB'; SET LOCAL default_statistics_target = 10")
    await conn.execute(CREATE_STAGING)
    # Before anything reads the org's rows (the e-mail check, the grouping, the foreign-key checks).
    await _refresh_stale_statistics(conn, org_id, "customer", "customer_contact")
    emails = EmailCheck(await load_known_emails(conn, org_id))
    records = reader.records()
    staged = _Staged(rows=0, failed_rows=set(), errors=[])

    def next_batch() -> tuple[int, list[tuple[Any, ...]], list[dict[str, Any]], int]:
        batch: list[tuple[Any, ...]] = []
        errors: list[dict[str, Any]] = []
        count = 0
        for line, fields in records:
            count += 1
            record, row_errors = validator.validate(line, fields)
            if record is None:
                errors.extend(row_errors)
            else:
                batch.append(record)
            if count == BATCH_ROWS:
                break
        emails.check(record[_EMAIL_SLOT] for record in batch if record[_EMAIL_SLOT] is not None)
        return count, batch, errors, reader.bytes_read

    pending: asyncio.Future[Any] = asyncio.ensure_future(to_thread.run_sync(next_batch))
    try:
        while True:
            count, batch, errors, position = await pending
            if count == 0:
                break
            pending = asyncio.ensure_future(to_thread.run_sync(next_batch))
            staged.rows += count
            staged.errors.extend(errors)
            staged.failed_rows.update(error["row"] for error in errors)
            if batch:
                await conn.copy_records_to_table("cm_import_row", records=batch, columns=STAGING_COLUMNS)
            if progress is not None:
                progress(staged.rows, position)
    finally:
        if not pending.done():
            with contextlib.suppress(Exception):
                await pending
    await emails.finish(conn, org_id, staged.rows)
    await _apply_email_problems(conn, staged, emails.problems)
    await conn.execute("ANALYZE cm_import_row")
    return staged


_EMAIL_SLOT = STAGING_COLUMNS.index("contact_email")


async def _apply_email_problems(conn: asyncpg.Connection, staged: _Staged, problems: dict[str, Problem]) -> None:
    """Rewrite the e-mails the rule normalises; fail the rows whose e-mail the rule rejects."""
    rewrites = [(cell, normalized) for cell, normalized, error in problems.values() if error is None and normalized]
    failures = {cell: error for cell, _, error in problems.values() if error is not None}
    if rewrites:
        await conn.execute("CREATE TEMPORARY TABLE cm_import_email (cell text, email text) ON COMMIT DROP")
        await conn.copy_records_to_table("cm_import_email", records=rewrites)
        await conn.execute(
            "UPDATE cm_import_row r SET contact_email = e.email FROM cm_import_email e WHERE r.contact_email = e.cell"
        )
    if failures:
        failed = await conn.fetch(
            "DELETE FROM cm_import_row WHERE contact_email = ANY($1::text[]) RETURNING row_no, contact_email",
            list(failures),
        )
        for row in failed:
            cell = row["contact_email"]
            staged.errors.append(
                {"row": row["row_no"], "field": "contact_email", "value": cell, "error": failures[cell]}
            )
            staged.failed_rows.add(row["row_no"])


# --- 2./3. the set-based apply ----------------------------------------------------------------


def _last_non_empty(column: str, row_no: str = "row_no") -> str:
    """The value of `column` in the last row (by `row_no`) where it is not empty."""
    return f"(array_agg({column} ORDER BY {row_no} DESC) FILTER (WHERE {column} IS NOT NULL))[1]"


def _differs(column: str) -> str:
    return f'min({column} COLLATE "C") <> max({column} COLLATE "C")'


def _address_columns(prefix: str) -> list[str]:
    return [f"{prefix}_{key}" for key in ADDRESS_FIELDS]


def _new_address(prefix: str) -> str:
    columns = _address_columns(prefix)
    pairs = ", ".join(f"'{key}', g.{column}" for key, column in zip(ADDRESS_FIELDS, columns, strict=True))
    return f"CASE WHEN num_nonnulls({', '.join('g.' + c for c in columns)}) > 0 THEN jsonb_build_object({pairs}) END"


def _merged_address(prefix: str, current: str) -> str:
    """Field by field: a non-empty cell replaces the stored field, the other fields stay."""
    columns = _address_columns(prefix)
    pairs = ", ".join(
        f"'{key}', coalesce(g.{column}, {current} ->> '{key}')"
        for key, column in zip(ADDRESS_FIELDS, columns, strict=True)
    )
    return (
        f"CASE WHEN num_nonnulls({', '.join('g.' + c for c in columns)}) = 0 THEN {current}"
        f" ELSE jsonb_build_object({pairs}) END"
    )


CREATE_GROUPS = (
    "CREATE TEMPORARY TABLE cm_import_customer ("
    " erp_customer_number text, first_row integer, row_count integer,"
    + "".join(f" {column} text," for column in MERGED_COLUMNS)
    + " metadata jsonb, maybe_disagrees boolean, customer_id uuid, existed boolean) ON COMMIT DROP"
)
_GROUP_COLUMNS = ", ".join(MERGED_COLUMNS)
# One row per customer-to-be: the rows of an ERP number merged, and each row without ERP number alone.
FILL_GROUPS = f"""
INSERT INTO cm_import_customer
WITH groups AS (
  -- Grouped in byte order (COLLATE "C"): the same groups, sorted several times faster than by a locale.
  SELECT erp_customer_number COLLATE "C" AS erp_customer_number, min(row_no) AS first_row,
         count(*)::integer AS row_count,
         {", ".join(_last_non_empty(column) for column in MERGED_COLUMNS)},
         cm_jsonb_merge(metadata ORDER BY row_no) AS metadata,
         count(*) > 1 AND ({" OR ".join(_differs(column) for column in MERGED_COLUMNS)}
                           OR min(metadata::text COLLATE "C") <> max(metadata::text COLLATE "C")) AS maybe_disagrees
    FROM cm_import_row WHERE erp_customer_number IS NOT NULL GROUP BY erp_customer_number COLLATE "C"
  UNION ALL
  SELECT NULL, row_no, 1, {_GROUP_COLUMNS}, metadata, false
    FROM cm_import_row WHERE erp_customer_number IS NULL
)
SELECT g.*, coalesce(c.id, gen_random_uuid()), c.id IS NOT NULL
  FROM groups g
  LEFT JOIN customer c ON c.org_id = $1 AND c.erp_customer_number = g.erp_customer_number COLLATE "C"
"""

MISSING_REQUIRED = """
SELECT first_row, erp_customer_number, name IS NULL, default_currency IS NULL, default_language IS NULL
  FROM cm_import_customer
 WHERE NOT existed AND (name IS NULL OR default_currency IS NULL OR default_language IS NULL)
"""

INDEX_GROUPS = "CREATE INDEX ON cm_import_customer (customer_id)"

INSERT_CUSTOMERS = f"""
WITH inserted AS (
  INSERT INTO customer (id, org_id, name, erp_customer_number, default_currency, default_language,
                        billing_address_json, shipping_address_json, metadata_json)
  SELECT g.customer_id, $1, g.name, g.erp_customer_number, g.default_currency, g.default_language,
         {_new_address("billing")}, {_new_address("shipping")}, g.metadata
    FROM cm_import_customer g
   WHERE NOT g.existed
  ON CONFLICT (org_id, erp_customer_number) WHERE erp_customer_number IS NOT NULL DO NOTHING
  RETURNING id
)
SELECT count(*) FROM inserted
"""

# Another writer created one of the "new" ERP numbers between our lookup and our insert: update it instead.
ADOPT_RACED = """
WITH adopted AS (
  UPDATE cm_import_customer g SET customer_id = c.id, existed = true
    FROM customer c
   WHERE NOT g.existed AND c.org_id = $1 AND c.erp_customer_number = g.erp_customer_number
     AND c.id <> g.customer_id
  RETURNING 1
)
SELECT count(*) FROM adopted
"""

_CUSTOMER_MERGE = {
    "name": "coalesce(g.name, c.name)",
    "default_currency": "coalesce(g.default_currency, c.default_currency)",
    "default_language": "coalesce(g.default_language, c.default_language)",
    "billing_address_json": _merged_address("billing", "c.billing_address_json"),
    "shipping_address_json": _merged_address("shipping", "c.shipping_address_json"),
    "metadata_json": "CASE WHEN g.metadata IS NULL THEN c.metadata_json"
    " ELSE coalesce(c.metadata_json, '{}'::jsonb) || g.metadata END",
}
# Expressions over the current row, so a concurrent change to another field is not overwritten.


def _differs_from_stored() -> str:
    """Whether merging would change the row: some non-empty cell differs from the stored value.

    Field by field rather than comparing the merged objects: cheap (no JSON is built for the customers
    that stay the same, the common case), and it reads exactly like the merge rule.
    """
    scalars = [f"g.{column} <> c.{column}" for column in ("name", "default_currency", "default_language")]
    addresses = [
        f"g.{prefix}_{key} IS NOT NULL AND g.{prefix}_{key} IS DISTINCT FROM c.{prefix}_address_json ->> '{key}'"
        for prefix in ("billing", "shipping")
        for key in ADDRESS_FIELDS
    ]
    # Metadata cells are strings: containment is equality of each given key's value.
    metadata = ["g.metadata IS NOT NULL AND NOT coalesce(c.metadata_json @> g.metadata, false)"]
    return "(" + "\n      OR ".join(f"({condition})" for condition in scalars + addresses + metadata) + ")"


UPDATE_CUSTOMERS = f"""
WITH changed AS (
  UPDATE customer c SET {", ".join(f"{column} = {merge}" for column, merge in _CUSTOMER_MERGE.items())}
    FROM cm_import_customer g
   WHERE g.existed AND c.org_id = $1 AND c.id = g.customer_id
     AND {_differs_from_stored()}
  RETURNING c.id
)
INSERT INTO cm_import_touched (customer_id, change) SELECT id, 'customer' FROM changed
"""

# What the import changed (a customer's fields, a contact, a new contact), for the counts of the report.
CREATE_TOUCHED = (
    "CREATE TEMPORARY TABLE cm_import_touched (customer_id uuid, contact_id uuid, change text) ON COMMIT DROP"
)

CREATE_CONTACT_GROUPS = """
CREATE TEMPORARY TABLE cm_import_contact (
  customer_id uuid, existed boolean, email citext, name text, is_primary boolean, primary_row integer,
  maybe_disagrees boolean
) ON COMMIT DROP
"""
# One row per (customer, e-mail): the last non-empty name and primary flag of the rows naming it.
FILL_CONTACTS = f"""
INSERT INTO cm_import_contact
SELECT g.customer_id, g.existed, r.contact_email,
       {_last_non_empty("r.contact_name", "r.row_no")},
       {_last_non_empty("r.contact_is_primary", "r.row_no")},
       max(r.row_no) FILTER (WHERE r.contact_is_primary),
       {_differs("r.contact_name")} OR (bool_or(r.contact_is_primary) AND NOT bool_and(r.contact_is_primary))
  FROM cm_import_row r
  JOIN cm_import_customer g ON g.erp_customer_number = r.erp_customer_number
 WHERE r.contact_email IS NOT NULL
 GROUP BY g.customer_id, g.existed, r.contact_email
UNION ALL
SELECT g.customer_id, g.existed, r.contact_email, r.contact_name, r.contact_is_primary,
       CASE WHEN r.contact_is_primary THEN r.row_no END, false
  FROM cm_import_row r
  JOIN cm_import_customer g ON g.erp_customer_number IS NULL AND g.first_row = r.row_no
 WHERE r.erp_customer_number IS NULL AND r.contact_email IS NOT NULL
"""

INDEX_CONTACTS = "CREATE INDEX ON cm_import_contact (customer_id, email)"

# Several contacts of one customer marked primary in the file: the last marked one wins.
ONE_PRIMARY_PER_CUSTOMER = """
WITH winners AS (
  SELECT customer_id, max(primary_row) AS primary_row
    FROM cm_import_contact WHERE is_primary
   GROUP BY customer_id HAVING count(*) > 1
)
UPDATE cm_import_contact ic SET is_primary = false
  FROM winners w
 WHERE ic.customer_id = w.customer_id AND ic.is_primary AND ic.primary_row <> w.primary_row
RETURNING ic.customer_id
"""

# Before the new primary is set: at most one primary per customer is a unique index, checked per row.
UNMARK_REPLACED_PRIMARIES = """
WITH unmarked AS (
  UPDATE customer_contact cc SET is_primary = false
    FROM cm_import_contact ic
   WHERE ic.existed AND ic.is_primary
     AND cc.org_id = $1 AND cc.customer_id = ic.customer_id AND cc.is_primary AND cc.email <> ic.email
  RETURNING cc.id, cc.customer_id
)
INSERT INTO cm_import_touched (customer_id, contact_id, change) SELECT customer_id, id, 'contact' FROM unmarked
"""

UPDATE_CONTACTS = """
WITH changed AS (
  UPDATE customer_contact cc
     SET name = coalesce(ic.name, cc.name), is_primary = coalesce(ic.is_primary, cc.is_primary)
    FROM cm_import_contact ic
   WHERE ic.existed AND cc.org_id = $1 AND cc.customer_id = ic.customer_id AND cc.email = ic.email
     AND (cc.name, cc.is_primary) IS DISTINCT FROM (coalesce(ic.name, cc.name), coalesce(ic.is_primary, cc.is_primary))
  RETURNING cc.id, cc.customer_id
)
INSERT INTO cm_import_touched (customer_id, contact_id, change) SELECT customer_id, id, 'contact' FROM changed
"""

INSERT_CONTACTS = """
WITH created AS (
  INSERT INTO customer_contact (org_id, customer_id, email, name, is_primary)
  SELECT $1, ic.customer_id, ic.email, ic.name, coalesce(ic.is_primary, false)
    FROM cm_import_contact ic
   WHERE NOT ic.existed
      OR NOT EXISTS (SELECT 1 FROM customer_contact cc
                      WHERE cc.org_id = $1 AND cc.customer_id = ic.customer_id AND cc.email = ic.email)
  ON CONFLICT (org_id, customer_id, email) DO NOTHING
  RETURNING customer_id, id
)
INSERT INTO cm_import_touched (customer_id, contact_id, change) SELECT customer_id, id, 'created' FROM created
"""

COUNTS = """
WITH touched AS (SELECT DISTINCT customer_id FROM cm_import_touched),
outcome AS (
  SELECT g.row_count,
         CASE WHEN NOT g.existed THEN 'imported' WHEN t.customer_id IS NOT NULL THEN 'updated' ELSE 'unchanged' END
           AS outcome
    FROM cm_import_customer g LEFT JOIN touched t ON t.customer_id = g.customer_id
)
SELECT outcome, count(*)::integer AS customers, sum(row_count)::integer AS rows FROM outcome GROUP BY outcome
"""

CONTACT_COUNTS = """
SELECT count(*) FILTER (WHERE change = 'created')::integer AS created,
       count(DISTINCT contact_id) FILTER (WHERE change = 'contact')::integer AS updated
  FROM cm_import_touched
"""


async def _apply(conn: asyncpg.Connection, org_id: OrgId) -> _Applied:
    # Under the lock, so a second import into this org sees everything the first one wrote.
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", IMPORT_LOCK_CLASS, str(org_id))
    await conn.execute(CREATE_GROUPS)
    await conn.execute(FILL_GROUPS, org_id)
    errors, failed_rows = await _drop_incomplete_new_customers(conn)
    await conn.execute("ANALYZE cm_import_customer")
    new, matched = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE NOT existed), count(*) FILTER (WHERE existed) FROM cm_import_customer"
    )
    if new:
        if await conn.fetchval(INSERT_CUSTOMERS, org_id) < new:
            matched += await conn.fetchval(ADOPT_RACED, org_id)
        # Before the contacts' foreign-key checks, one lookup by (org_id, id) for each contact written.
        await _refresh_stale_statistics(conn, org_id, "customer")
    await conn.execute(CREATE_TOUCHED)
    if matched:
        # Whatever the planner believes about `customer` (its statistics may predate a large import, or
        # the org may be new to them), a join to an indexed work table never turns into repeated scans.
        await conn.execute(INDEX_GROUPS)
        await conn.execute(UPDATE_CUSTOMERS, org_id)
    await conn.execute(CREATE_CONTACT_GROUPS)
    await conn.execute(FILL_CONTACTS)
    if matched:
        await conn.execute(INDEX_CONTACTS)
    await conn.execute("ANALYZE cm_import_contact")
    multi_primary = {row["customer_id"] for row in await conn.fetch(ONE_PRIMARY_PER_CUSTOMER)}
    if matched:
        await conn.execute(UNMARK_REPLACED_PRIMARIES, org_id)
        await conn.execute(UPDATE_CONTACTS, org_id)
    await conn.execute(INSERT_CONTACTS, org_id)

    await conn.execute("ANALYZE cm_import_touched")
    customers = {row["outcome"]: row for row in await conn.fetch(COUNTS)}
    contacts = await conn.fetchrow(CONTACT_COUNTS)
    warnings = await _duplicate_warnings(conn, multi_primary)
    warnings += await _missing_erp_warning(conn)

    def count(outcome: str) -> int:
        return customers[outcome]["customers"] if outcome in customers else 0

    return _Applied(
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


async def _refresh_stale_statistics(conn: asyncpg.Connection, org_id: OrgId, *tables: str) -> None:
    """`ANALYZE` each table whose statistics say it holds far fewer rows than the org alone has in it.

    The planner estimates a table's rows as the density of its last `ANALYZE` or `VACUUM` (rows per page)
    times its pages now. Taken while the table was empty but its pages were not (after a `DELETE`, before a
    `VACUUM` gave them back), that density is 0: the table looks empty whatever it holds, every index that
    starts with `org_id` looks as good as any other, and a lookup of one row — the contacts' foreign-key
    check by (org_id, id), which PostgreSQL plans itself, or the e-mail check by (org_id, email) — may walk
    the org's whole range of another index, once per row: quadratic (100,000 rows ran for many minutes).
    An `ANALYZE` in the transaction counts the rows it has written, too, and replaces the cached plans.

    Only when stale, so that it is rare: `ANALYZE` holds a lock until we commit that another `ANALYZE` of
    the table waits for (writers do not). Its row count is visible to everyone at once (it is not
    transactional), so an import into another org that comes later finds the statistics fresh; one that
    tried at the same moment gives up after `ANALYZE_LOCK_TIMEOUT` and goes on with that row count.
    """
    for table in tables:
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) SELECT FROM ONLY {table}")
        estimate = int((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"])
        if estimate >= STALE_BELOW_ROWS:
            continue
        # Whether the org holds more rows than that, counted no further than needed to know it.
        limit = STALE_RATIO * estimate + STALE_MIN_ROWS
        counted = await conn.fetchval(
            f"SELECT count(*) FROM (SELECT FROM {table} WHERE org_id = $1 LIMIT $2) AS org_rows", org_id, limit + 1
        )
        if counted <= limit:
            continue
        settings = await conn.fetchrow(
            "SELECT current_setting('lock_timeout') AS lock_timeout,"
            " current_setting('default_statistics_target') AS target,"
            " (SELECT reset_val FROM pg_settings WHERE name = 'default_statistics_target') AS server_target"
        )
        await conn.execute("SAVEPOINT cm_import_analyze")
        try:
            # With the server's statistics target, not the work tables' small one: these statistics stay.
            await conn.execute(
                f"SET LOCAL lock_timeout = '{ANALYZE_LOCK_TIMEOUT}';"
                f" SET LOCAL default_statistics_target = {int(settings['server_target'])}; ANALYZE {table}"
            )
        except asyncpg.LockNotAvailableError:
            await conn.execute("ROLLBACK TO SAVEPOINT cm_import_analyze; RELEASE SAVEPOINT cm_import_analyze")
            continue
        await conn.execute("RELEASE SAVEPOINT cm_import_analyze")
        await conn.execute(
            "SELECT set_config('lock_timeout', $1, true), set_config('default_statistics_target', $2, true)",
            settings["lock_timeout"],
            settings["target"],
        )


async def _drop_incomplete_new_customers(conn: asyncpg.Connection) -> tuple[list[dict[str, Any]], set[int]]:
    """A new customer needs name, currency and language in some row; else each of its rows fails."""
    incomplete = await conn.fetch(MISSING_REQUIRED)
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
        for row in await conn.fetch(
            "SELECT row_no, erp_customer_number FROM cm_import_row WHERE erp_customer_number = ANY($1::text[])",
            list(missing_by_erp),
        ):
            failed_rows.add(row["row_no"])
            errors.extend(_missing_errors(row["row_no"], missing_by_erp[row["erp_customer_number"]]))
    await conn.execute("DELETE FROM cm_import_row WHERE row_no = ANY($1::integer[])", list(failed_rows))
    await conn.execute(
        "DELETE FROM cm_import_customer WHERE NOT existed"
        " AND (first_row = ANY($1::integer[]) OR erp_customer_number = ANY($2::text[]))",
        rows_without_erp,
        list(missing_by_erp),
    )
    return errors, failed_rows


def _missing_errors(row: int, columns: list[str]) -> list[dict[str, Any]]:
    return [
        {"row": row, "field": column, "value": "", "error": f"Missing required field: {column}"} for column in columns
    ]


# --- 4. warnings, report, record ---------------------------------------------------------------


async def _duplicate_warnings(conn: asyncpg.Connection, multi_primary: set[uuid.UUID]) -> list[ImportWarning]:
    """One warning per ERP number whose rows hold different non-empty values for a field."""
    suspects = await conn.fetch(
        """SELECT g.erp_customer_number FROM cm_import_customer g
            WHERE g.erp_customer_number IS NOT NULL
              AND (g.maybe_disagrees OR g.customer_id = ANY($1::uuid[])
                   OR EXISTS (SELECT 1 FROM cm_import_contact ic
                               WHERE ic.customer_id = g.customer_id AND ic.maybe_disagrees))""",
        list(multi_primary),
    )
    if not suspects:
        return []
    rows_by_erp: dict[str, list[asyncpg.Record]] = {}
    for row in await conn.fetch(
        "SELECT * FROM cm_import_row WHERE erp_customer_number = ANY($1::text[]) ORDER BY row_no",
        [suspect["erp_customer_number"] for suspect in suspects],
    ):
        rows_by_erp.setdefault(row["erp_customer_number"], []).append(row)
    warnings = []
    for erp_number, rows in rows_by_erp.items():
        columns, involved = _disagreements(rows)
        if columns:
            listed = sorted(involved)
            warnings.append(
                ImportWarning(
                    code="DUPLICATE_ERP_NUMBER",
                    rows=listed,
                    warning=f"erp_customer_number {erp_number} on rows {_row_list(listed)} with different values"
                    f" ({', '.join(columns)}): the last row wins",
                )
            )
    return sorted(warnings, key=lambda warning: warning.rows[0])


def _disagreements(rows: list[asyncpg.Record]) -> tuple[list[str], set[int]]:
    """The columns in which rows of one ERP number hold different non-empty values, and those rows."""
    columns: list[str] = []
    involved: set[int] = set()

    def check(column: str, holders: Iterator[tuple[int, Any]]) -> None:
        held = list(holders)
        if len({value for _, value in held}) > 1:
            if column not in columns:
                columns.append(column)
            involved.update(row for row, _ in held)

    for column in MERGED_COLUMNS:
        check(column, ((row["row_no"], row[column]) for row in rows if row[column] is not None))
    metadata = [(row["row_no"], _object(row["metadata"])) for row in rows if row["metadata"] is not None]
    for key in sorted({key for _, values in metadata for key in values}):
        check(METADATA_PREFIX + key, ((row, values[key]) for row, values in metadata if key in values))
    for email in sorted({row["contact_email"] for row in rows if row["contact_email"] is not None}):
        same = [row for row in rows if row["contact_email"] == email]
        check("contact_name", ((row["row_no"], row["contact_name"]) for row in same if row["contact_name"] is not None))
        check(
            "contact_is_primary",
            ((row["row_no"], row["contact_is_primary"]) for row in same if row["contact_is_primary"] is not None),
        )
    check("contact_is_primary", ((row["row_no"], row["contact_email"]) for row in rows if row["contact_is_primary"]))
    return columns, involved


def _object(value: Any) -> dict[str, Any]:
    decoded = json.loads(value) if isinstance(value, str) else value
    return decoded if isinstance(decoded, dict) else {}


async def _missing_erp_warning(conn: asyncpg.Connection) -> list[ImportWarning]:
    rows = [
        record["first_row"]
        for record in await conn.fetch(
            "SELECT first_row FROM cm_import_customer WHERE erp_customer_number IS NULL ORDER BY first_row"
        )
    ]
    if not rows:
        return []
    return [
        ImportWarning(
            code="MISSING_ERP_NUMBER",
            rows=rows,
            warning=f"{len(rows)} row(s) without erp_customer_number became new customers (rows {_row_list(rows)});"
            " a later import cannot update them, and importing the file again creates them again",
        )
    ]


def _row_list(rows: list[int]) -> str:
    shown = ", ".join(str(row) for row in rows[:WARNING_ROWS_IN_MESSAGE])
    return shown + (f" and {len(rows) - WARNING_ROWS_IN_MESSAGE} more" if len(rows) > WARNING_ROWS_IN_MESSAGE else "")


def _report(
    reader: CsvReader, validator: RowValidator, staged: _Staged, applied: _Applied, dry_run: bool
) -> ImportReport:
    errors = sorted(staged.errors + applied.errors, key=_error_order)
    warnings = list(applied.warnings)
    if validator.contact_without_email:
        rows = validator.contact_without_email
        warnings.append(
            ImportWarning(
                code="CONTACT_WITHOUT_EMAIL",
                rows=rows,
                warning=f"rows {_row_list(rows)} name a contact but have no contact_email: no contact was created"
                " or changed for them (contacts are matched by e-mail)",
            )
        )
    if validator.header.unknown:
        warnings.append(
            ImportWarning(
                code="UNKNOWN_COLUMNS",
                rows=[],
                warning=f"ignored columns: {', '.join(validator.header.unknown)}",
            )
        )
    return ImportReport(
        rows=staged.rows,
        imported=applied.imported,
        updated=applied.updated,
        unchanged=applied.unchanged,
        failed=len(staged.failed_rows | applied.failed_rows),
        contacts_created=applied.contacts_created,
        contacts_updated=applied.contacts_updated,
        errors=[RowError(**error) for error in errors],
        warnings=warnings,
        encoding="windows-1252" if reader.encoding == "windows-1252" else "utf-8",
        delimiter=reader.delimiter,
        dry_run=dry_run,
    )


_COLUMN_ORDER = {column: index for index, column in enumerate(STAGING_COLUMNS)}


def _error_order(error: dict[str, Any]) -> tuple[int, int]:
    return error["row"], _COLUMN_ORDER.get(error["field"], len(_COLUMN_ORDER))


async def _record_run(
    conn: asyncpg.Connection, org_id: OrgId, source: ImportSource, report: ImportReport, duration_ms: int
) -> None:
    await conn.execute(
        """INSERT INTO import_run (org_id, source, user_id, user_email, token_id, token_name, file_name, dry_run,
                                   encoding, delimiter, row_count, imported, updated, unchanged, failed,
                                   contacts_created, contacts_updated, duration_ms)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)""",
        org_id,
        source.kind,
        source.user_id,
        source.user_email,
        source.token_id,
        source.token_name,
        source.file_name,
        report.dry_run,
        report.encoding,
        report.delimiter,
        report.rows,
        report.imported,
        report.updated,
        report.unchanged,
        report.failed,
        report.contacts_created,
        report.contacts_updated,
        duration_ms,
    )


# --- the record of imports ----------------------------------------------------------------------


async def list_import_runs(
    session: AsyncSession, org_id: OrgId, *, limit: int, after: tuple[datetime, uuid.UUID] | None = None
) -> list[ImportRunOut]:
    """The org's imports, newest first; `after` continues behind the last one of a previous page."""
    params: dict[str, Any] = {"org_id": org_id, "limit": limit}
    condition = ""
    if after is not None:
        condition = "AND (created_at, id) < (:after_created_at, :after_id)"
        params["after_created_at"], params["after_id"] = after
    rows = await session.execute(
        text(
            f"""SELECT id, created_at, source, user_email, token_name, file_name, dry_run, row_count AS rows,
                       imported, updated, unchanged, failed
                  FROM import_run
                 WHERE org_id = :org_id {condition}
                 ORDER BY created_at DESC, id DESC
                 LIMIT :limit"""
        ),
        params,
    )
    return [ImportRunOut.model_validate(row, from_attributes=True) for row in rows]
