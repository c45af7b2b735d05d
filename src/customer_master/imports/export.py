"""The export of API.md §6: every customer of an org in the import format, streamed (merged ones not: §12).

One row per contact (primary first, then by e-mail; a customer without contacts gets one row),
customers by name (case-insensitive) then id, all import columns then `metadata_<key>` sorted by key.
Read in one REPEATABLE READ snapshot through a server-side cursor, so memory stays flat and the
header's metadata columns match the rows.
"""

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from customer_master.auth.tenancy import OrgId
from customer_master.customers.schemas import ADDRESS_FIELDS
from customer_master.db.session import Database, driver_connection
from customer_master.imports.rows import COLUMNS, METADATA_PREFIX

ROWS_PER_CHUNK = 500
DELIMITER_NAMES = {",": ",", ";": ";", "\t": "\t", "comma": ",", "semicolon": ";", "tab": "\t"}

# Live customers only: a merged customer (a tombstone, `merged_into` set) is not exported; its survivor is,
# once, without its ERP aliases (the import format has no column for them).
METADATA_KEYS = """
SELECT DISTINCT key FROM customer c, jsonb_object_keys(c.metadata_json) AS key
 WHERE c.org_id = $1 AND c.merged_into IS NULL AND jsonb_typeof(c.metadata_json) = 'object'
"""
ROWS = """
SELECT c.name, c.erp_customer_number, c.default_currency, c.default_language,
       c.billing_address_json, c.shipping_address_json, c.metadata_json,
       cc.email::text AS email, cc.name AS contact_name, cc.is_primary
  FROM customer c
  LEFT JOIN customer_contact cc ON cc.org_id = c.org_id AND cc.customer_id = c.id
 WHERE c.org_id = $1 AND c.merged_into IS NULL
 ORDER BY lower(c.name), c.id, cc.is_primary DESC, cc.email
"""


def parse_delimiter(value: str) -> str | None:
    """`,` `;` tab (or their names); None when it is none of them."""
    return DELIMITER_NAMES.get(value) or DELIMITER_NAMES.get(value.strip().lower())


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _object(value: Any) -> dict[str, Any]:
    """A JSON object column (decoded by the engine's codec, or text on a bare connection)."""
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def _address_cells(address: Any) -> list[str]:
    values = _object(address)
    return [_text(values.get(key)) for key in ADDRESS_FIELDS]


def _row(record: asyncpg.Record, metadata_keys: list[str]) -> list[str]:
    metadata = _object(record["metadata_json"])
    is_primary = record["is_primary"]
    return [
        record["name"],
        record["erp_customer_number"] or "",
        record["default_currency"],
        record["default_language"],
        *_address_cells(record["billing_address_json"]),
        *_address_cells(record["shipping_address_json"]),
        record["email"] or "",
        record["contact_name"] or "",
        "" if is_primary is None else ("true" if is_primary else "false"),
        *(_text(metadata.get(key)) for key in metadata_keys),
    ]


async def stream_customers_csv(database: Database, org_id: OrgId, delimiter: str = ",") -> AsyncIterator[bytes]:
    """The org's customers as UTF-8 CSV, in chunks of a few hundred rows."""
    async with database.transaction() as session:
        conn = await driver_connection(session)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            metadata_keys = sorted(record["key"] for record in await conn.fetch(METADATA_KEYS, org_id))
            buffer = io.StringIO()
            writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
            writer.writerow([*COLUMNS, *(METADATA_PREFIX + key for key in metadata_keys)])
            rows = 0
            async for record in conn.cursor(ROWS, org_id, prefetch=2_000):
                writer.writerow(_row(record, metadata_keys))
                rows += 1
                if rows % ROWS_PER_CHUNK == 0:
                    yield buffer.getvalue().encode()
                    buffer.seek(0)
                    buffer.truncate()
            yield buffer.getvalue().encode()
