"""Step 1 of the import: the valid rows of the file in the staging work table `cm_import_row`.

Rows are read and checked in a worker thread while the previous batch is being copied (`COPY`) into
staging; the e-mails the rule rewrites are rewritten there, and the rows whose e-mail it rejects leave
staging before anything is applied. The table lives as long as the transaction (`ON COMMIT DROP`).
"""

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from anyio import to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.db.session import driver_connection
from customer_master.imports.emails import EmailCheck, Problem
from customer_master.imports.reader import CsvReader
from customer_master.imports.rows import STAGING_COLUMNS, RowValidator

BATCH_ROWS = 5_000

# Receives (rows read so far, bytes read so far).
Progress = Callable[[int, int], None]


@dataclass
class Staged:
    """What staging saw: the rows read, and the rows (and their errors) that did not reach staging."""

    rows: int
    failed_rows: set[int]
    errors: list[dict[str, Any]]


async def driver_in_transaction(session: AsyncSession) -> asyncpg.Connection:
    """The session's own asyncpg connection (COPY needs the driver), inside the session's transaction.

    A connection lost on it is the session's to handle (`Database.transaction`: a 503, the connection discarded).
    """
    # SQLAlchemy's adapter sends BEGIN lazily, with its first statement: send one, so that everything
    # done on the driver below belongs to the session's transaction.
    await (await session.connection()).exec_driver_sql("SELECT 1")
    driver = await driver_connection(session)
    assert driver.is_in_transaction(), "the import must run inside the session's transaction"
    return driver


# Sorts and hashes of 100k-row work tables in memory; small samples suffice for their statistics.
# (Two settings in one round trip.)
SET_WORK_TABLE_SETTINGS = "SET LOCAL work_mem = '64MB'; SET LOCAL default_statistics_target = 10"


async def set_work_table_settings(conn: asyncpg.Connection) -> None:
    await conn.execute(SET_WORK_TABLE_SETTINGS)


_STAGING_TYPES = {"row_no": "integer", "contact_is_primary": "boolean", "metadata": "jsonb"}
CREATE_STAGING_TABLE = (
    "CREATE TEMPORARY TABLE cm_import_row ("
    + ", ".join(f"{column} {_STAGING_TYPES.get(column, 'text')}" for column in STAGING_COLUMNS)
    + ") ON COMMIT DROP"
)


async def create_staging_table(conn: asyncpg.Connection) -> None:
    await conn.execute(CREATE_STAGING_TABLE)


_EMAIL_SLOT = STAGING_COLUMNS.index("contact_email")


async def copy_valid_rows(
    conn: asyncpg.Connection,
    reader: CsvReader,
    validator: RowValidator,
    emails: EmailCheck,
    progress: Progress | None,
) -> Staged:
    """Read and check rows in a worker thread while the previous batch is being copied into staging.

    The contact e-mails of the valid rows go to `emails`, which checks each distinct cell once (`emails.py`).
    """
    records = reader.records()
    staged = Staged(rows=0, failed_rows=set(), errors=[])

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
    return staged


# --- the e-mails the rule rewrites or rejects ---------------------------------------------------

CREATE_EMAIL_REWRITES = "CREATE TEMPORARY TABLE cm_import_email (cell text, email text) ON COMMIT DROP"
REWRITE_EMAILS = (
    "UPDATE cm_import_row r SET contact_email = e.email FROM cm_import_email e WHERE r.contact_email = e.cell"
)
DROP_ROWS_WITH_REJECTED_EMAILS = (
    "DELETE FROM cm_import_row WHERE contact_email = ANY($1::text[]) RETURNING row_no, contact_email"
)


async def apply_email_problems(conn: asyncpg.Connection, staged: Staged, problems: dict[str, Problem]) -> None:
    """Rewrite the e-mails the rule normalises; fail the rows whose e-mail the rule rejects."""
    rewrites = [(cell, normalized) for cell, normalized, error in problems.values() if error is None and normalized]
    failures = {cell: error for cell, _, error in problems.values() if error is not None}
    if rewrites:
        await conn.execute(CREATE_EMAIL_REWRITES)
        await conn.copy_records_to_table("cm_import_email", records=rewrites)
        await conn.execute(REWRITE_EMAILS)
    if failures:
        failed = await conn.fetch(DROP_ROWS_WITH_REJECTED_EMAILS, list(failures))
        for row in failed:
            cell = row["contact_email"]
            staged.errors.append(
                {"row": row["row_no"], "field": "contact_email", "value": cell, "error": failures[cell]}
            )
            staged.failed_rows.add(row["row_no"])


ANALYZE_STAGING_TABLE = "ANALYZE cm_import_row"


async def analyze_staging_table(conn: asyncpg.Connection) -> None:
    await conn.execute(ANALYZE_STAGING_TABLE)
