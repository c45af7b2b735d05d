"""Step 4 of the import: the report of API.md §6 — counts, row errors in file order, and the warnings.

Plain Python over what staging and the set-based statements returned; no database here.
"""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from customer_master.imports.reader import CsvReader
from customer_master.imports.rows import MERGED_COLUMNS, METADATA_PREFIX, STAGING_COLUMNS, RowValidator
from customer_master.imports.schemas import ImportReport, ImportWarning, RowError
from customer_master.imports.staging import Staged

WARNING_ROWS_IN_MESSAGE = 10


@dataclass
class Applied:
    """What the set-based statements did, for the report and the metrics."""

    imported: int
    updated: int
    unchanged: int
    contacts_created: int
    contacts_updated: int
    row_outcomes: dict[str, int]
    errors: list[dict[str, Any]]
    failed_rows: set[int]
    warnings: list[ImportWarning]


def build_report(
    reader: CsvReader, validator: RowValidator, staged: Staged, applied: Applied, dry_run: bool, import_id: uuid.UUID
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
        import_id=import_id,
    )


_COLUMN_ORDER = {column: index for index, column in enumerate(STAGING_COLUMNS)}


def _error_order(error: dict[str, Any]) -> tuple[int, int]:
    return error["row"], _COLUMN_ORDER.get(error["field"], len(_COLUMN_ORDER))


# --- warnings -------------------------------------------------------------------------------------


def duplicate_erp_warnings(rows: list[asyncpg.Record], customer_of: dict[str, uuid.UUID]) -> list[ImportWarning]:
    """One warning per ERP number whose rows (staged, in file order) hold different non-empty values for a field.

    Rows of several numbers of one customer (`customer_of`: its number and an alias of it) are compared
    together, and their warning names the numbers in file order.
    """
    rows_by_customer: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for row in rows:
        rows_by_customer.setdefault(customer_of[row["erp_customer_number"]], []).append(row)
    warnings = []
    for rows_of_customer in rows_by_customer.values():
        columns, involved = _disagreements(rows_of_customer)
        if columns:
            listed = sorted(involved)
            numbers = list(dict.fromkeys(row["erp_customer_number"] for row in rows_of_customer))
            named = (
                f"erp_customer_number {numbers[0]}"
                if len(numbers) == 1
                else f"erp_customer_numbers {', '.join(numbers)} (one customer)"
            )
            warnings.append(
                ImportWarning(
                    code="DUPLICATE_ERP_NUMBER",
                    rows=listed,
                    warning=f"{named} on rows {_row_list(listed)} with different values"
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


def missing_erp_warning(rows: list[int]) -> list[ImportWarning]:
    """The rows that became new customers without an ERP number, if any."""
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
