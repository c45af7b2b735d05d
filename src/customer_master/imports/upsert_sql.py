"""Steps 2 and 3 of the import: the set-based statements that apply the staged rows, in the order they run.

Each statement is one constant named for what it does, with the function that sends it beside it; the
org is passed explicitly to every statement that reads or writes the org's rows. The work tables are
temporary (`ON COMMIT DROP`), each created by its own statement where it is first needed:

- `cm_import_customer`: one row per customer-to-be (the staged rows of an ERP number grouped). A group is
  matched to the live customer that carries its ERP number, or that has it among its `erp_aliases` (a
  merge's survivor: API.md §12). When several groups match one customer (its own number and an alias, or
  two aliases, in one file), `unite_groups_of_one_customer` makes the first of them (by row) hold the
  fields of all their rows, and leaves the others without fields and with `row_count` 0: they still tie
  their rows' contacts to the customer, but neither write nor count it;
- `cm_import_touched`: what the import changed (a customer's fields, a contact, a new contact), for the
  counts of the report;
- `cm_import_contact`: one row per (customer, e-mail).
"""

import uuid

import asyncpg

from customer_master.auth.tenancy import OrgId
from customer_master.customers.schemas import ADDRESS_FIELDS
from customer_master.imports.rows import MERGED_COLUMNS

# pg_advisory_xact_lock(IMPORT_LOCK_CLASS, hashtext(org id)): the per-org import lock. The two-key form
# lives apart from the single-bigint keys (the migration lock), so they never collide.
IMPORT_LOCK_CLASS = 47_110_002

# --- pieces of SQL built from the column lists ----------------------------------------------------


def _last_non_empty(column: str, row_no: str = "row_no") -> str:
    """The value of `column` in the last row (by `row_no`) where it is not empty."""
    return f"(array_agg({column} ORDER BY {row_no} DESC) FILTER (WHERE {column} IS NOT NULL))[1]"


def _differs(column: str) -> str:
    return f'min({column} COLLATE "C") <> max({column} COLLATE "C")'


def _recording_contacts(change: str, write: str) -> str:
    """`write` (a statement returning `customer_id, id` of each contact it writes) with each of those contacts
    recorded in `cm_import_touched` as `change`."""
    return (
        f"WITH written AS ({write})\n"
        "INSERT INTO cm_import_touched (customer_id, contact_id, change)\n"
        f"SELECT customer_id, id, '{change}' FROM written\n"
    )


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


# --- the lock -----------------------------------------------------------------------------------

LOCK_ORG_IMPORTS = "SELECT pg_advisory_xact_lock($1, hashtext($2))"


async def lock_org_imports(conn: asyncpg.Connection, org_id: OrgId) -> None:
    """Imports into one org run one at a time, the second waiting for the first (until our commit)."""
    await conn.execute(LOCK_ORG_IMPORTS, IMPORT_LOCK_CLASS, str(org_id))


WAIT_FOR_ORG_IMPORTS = "SELECT pg_advisory_xact_lock_shared($1, hashtext($2))"


async def wait_for_org_imports(conn: asyncpg.Connection, org_id: OrgId) -> None:
    """The same key, shared, until the caller's commit: waits for a running import into the org and keeps
    the next one waiting, while other holders of the shared lock run side by side (merges: an import never
    sees a merge half done, nor a merge an import)."""
    await conn.execute(WAIT_FOR_ORG_IMPORTS, IMPORT_LOCK_CLASS, str(org_id))


# --- customers to be: the staged rows grouped by ERP number ---------------------------------------

CREATE_CUSTOMER_GROUPS = (
    "CREATE TEMPORARY TABLE cm_import_customer ("
    " erp_customer_number text, first_row integer, row_count integer,"
    + "".join(f" {column} text," for column in MERGED_COLUMNS)
    + " metadata jsonb, maybe_disagrees boolean, customer_id uuid, existed boolean, by_alias boolean)"
    " ON COMMIT DROP"
)


async def create_customer_groups(conn: asyncpg.Connection) -> None:
    await conn.execute(CREATE_CUSTOMER_GROUPS)


_GROUP_COLUMNS = ", ".join(MERGED_COLUMNS)
# One row per customer-to-be: the rows of an ERP number merged, and each row without ERP number alone.
GROUP_ROWS_INTO_CUSTOMERS = f"""
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
SELECT g.*, coalesce(c.id, a.customer_id, gen_random_uuid()), c.id IS NOT NULL OR a.customer_id IS NOT NULL,
       a.customer_id IS NOT NULL
  FROM groups g
  LEFT JOIN customer c ON c.org_id = $1 AND c.erp_customer_number = g.erp_customer_number COLLATE "C"
  -- A number is never both a customer's and an alias (0009's triggers). Tombstones have no number, and an
  -- alias of one (a merge keeps none there) is not matched either.
  LEFT JOIN (SELECT a.erp_customer_number, a.customer_id
               FROM customer_erp_alias a
               JOIN customer s ON s.org_id = a.org_id AND s.id = a.customer_id AND s.merged_into IS NULL
              WHERE a.org_id = $1) a ON a.erp_customer_number = g.erp_customer_number COLLATE "C"
"""


async def group_rows_into_customers(conn: asyncpg.Connection, org_id: OrgId) -> None:
    """Fill `cm_import_customer`, each group matched to the org's customer of its ERP number, or of which it is
    an ERP alias, if there is one."""
    await conn.execute(GROUP_ROWS_INTO_CUSTOMERS, org_id)


# --- new customers without a required field ------------------------------------------------------

NEW_CUSTOMERS_MISSING_REQUIRED = """
SELECT first_row, erp_customer_number, name IS NULL, default_currency IS NULL, default_language IS NULL
  FROM cm_import_customer
 WHERE NOT existed AND (name IS NULL OR default_currency IS NULL OR default_language IS NULL)
"""


async def new_customers_missing_required(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """(first_row, erp_customer_number, name missing, currency missing, language missing) per such group."""
    rows: list[asyncpg.Record] = await conn.fetch(NEW_CUSTOMERS_MISSING_REQUIRED)
    return rows


ROW_NUMBERS_OF_ERP_NUMBERS = (
    "SELECT row_no, erp_customer_number FROM cm_import_row WHERE erp_customer_number = ANY($1::text[])"
)


async def row_numbers_of_erp_numbers(conn: asyncpg.Connection, erp_numbers: list[str]) -> list[asyncpg.Record]:
    """(row_no, erp_customer_number) of each staged row of these ERP numbers."""
    rows: list[asyncpg.Record] = await conn.fetch(ROW_NUMBERS_OF_ERP_NUMBERS, erp_numbers)
    return rows


DROP_STAGED_ROWS = "DELETE FROM cm_import_row WHERE row_no = ANY($1::integer[])"


async def drop_staged_rows(conn: asyncpg.Connection, row_numbers: list[int]) -> None:
    await conn.execute(DROP_STAGED_ROWS, row_numbers)


DROP_NEW_CUSTOMER_GROUPS = (
    "DELETE FROM cm_import_customer WHERE NOT existed"
    " AND (first_row = ANY($1::integer[]) OR erp_customer_number = ANY($2::text[]))"
)


async def drop_new_customer_groups(conn: asyncpg.Connection, first_rows: list[int], erp_numbers: list[str]) -> None:
    """Drop the new customers-to-be of these rows without ERP number and of these ERP numbers."""
    await conn.execute(DROP_NEW_CUSTOMER_GROUPS, first_rows, erp_numbers)


ANALYZE_CUSTOMER_GROUPS = "ANALYZE cm_import_customer"


async def analyze_customer_groups(conn: asyncpg.Connection) -> None:
    await conn.execute(ANALYZE_CUSTOMER_GROUPS)


COUNT_NEW_AND_MATCHED_CUSTOMERS = (
    "SELECT count(*) FILTER (WHERE NOT existed), count(*) FILTER (WHERE existed), count(*) FILTER (WHERE by_alias)"
    " FROM cm_import_customer"
)


async def count_new_and_matched_customers(conn: asyncpg.Connection) -> tuple[int, int, int]:
    """How many customers-to-be are new, how many match a stored customer, and how many of those by an alias."""
    new, matched, by_alias = await conn.fetchrow(COUNT_NEW_AND_MATCHED_CUSTOMERS)
    return new, matched, by_alias


# --- new customers --------------------------------------------------------------------------------

INSERT_NEW_CUSTOMERS = f"""
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


async def insert_new_customers(conn: asyncpg.Connection, org_id: OrgId) -> int:
    """The number inserted: fewer than the new groups when another writer created one of their ERP numbers."""
    inserted: int = await conn.fetchval(INSERT_NEW_CUSTOMERS, org_id)
    return inserted


# Another writer created one of the "new" ERP numbers between our lookup and our insert: update it instead.
ADOPT_CUSTOMERS_CREATED_MEANWHILE = """
WITH adopted AS (
  UPDATE cm_import_customer g SET customer_id = c.id, existed = true
    FROM customer c
   WHERE NOT g.existed AND c.org_id = $1 AND c.erp_customer_number = g.erp_customer_number
     AND c.id <> g.customer_id
  RETURNING 1
)
SELECT count(*) FROM adopted
"""


async def adopt_customers_created_meanwhile(conn: asyncpg.Connection, org_id: OrgId) -> int:
    """How many "new" customers-to-be now match a stored customer instead."""
    adopted: int = await conn.fetchval(ADOPT_CUSTOMERS_CREATED_MEANWHILE, org_id)
    return adopted


# --- several groups, one customer -----------------------------------------------------------------

_UNITED_FIELDS = ", ".join(
    f"{column} = CASE WHEN g.first_row = u.first_row THEN u.{column} END" for column in (*MERGED_COLUMNS, "metadata")
)
# A customer matched by several groups (its ERP number and an alias of it, or two aliases): the first group
# (by row) takes the fields of all their rows, the last non-empty cell winning in row order as within one
# group; the others keep nothing to write (so no `UPDATE … FROM` row of theirs differs from the stored
# customer) and no rows to count. All are checked for disagreeing rows.
UNITE_GROUPS_OF_ONE_CUSTOMER = f"""
WITH shared AS (
  SELECT customer_id, min(first_row) AS first_row
    FROM cm_import_customer WHERE existed GROUP BY customer_id HAVING count(*) > 1
),
united AS (
  SELECT s.customer_id, s.first_row, count(*)::integer AS row_count,
         {", ".join(_last_non_empty("r." + column, "r.row_no") + f" AS {column}" for column in MERGED_COLUMNS)},
         cm_jsonb_merge(r.metadata ORDER BY r.row_no) AS metadata
    FROM shared s
    JOIN cm_import_customer g ON g.customer_id = s.customer_id
    JOIN cm_import_row r ON r.erp_customer_number = g.erp_customer_number
   GROUP BY s.customer_id, s.first_row
),
changed AS (
  UPDATE cm_import_customer g
     SET {_UNITED_FIELDS}, row_count = CASE WHEN g.first_row = u.first_row THEN u.row_count ELSE 0 END,
         maybe_disagrees = true
    FROM united u
   WHERE g.customer_id = u.customer_id
  RETURNING 1
)
SELECT count(*) FROM changed
"""


async def unite_groups_of_one_customer(conn: asyncpg.Connection) -> int:
    """Several groups that match one customer made one customer-to-be; how many groups were involved."""
    united: int = await conn.fetchval(UNITE_GROUPS_OF_ONE_CUSTOMER)
    return united


# --- what the import changed ----------------------------------------------------------------------

# What the import changed (a customer's fields, a contact, a new contact), for the counts of the report.
CREATE_TOUCHED = (
    "CREATE TEMPORARY TABLE cm_import_touched (customer_id uuid, contact_id uuid, change text) ON COMMIT DROP"
)


async def create_touched(conn: asyncpg.Connection) -> None:
    await conn.execute(CREATE_TOUCHED)


# --- matched customers ----------------------------------------------------------------------------

INDEX_CUSTOMER_GROUPS = "CREATE INDEX ON cm_import_customer (customer_id)"


async def index_customer_groups(conn: asyncpg.Connection) -> None:
    await conn.execute(INDEX_CUSTOMER_GROUPS)


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


UPDATE_MATCHED_CUSTOMERS = f"""
WITH changed AS (
  UPDATE customer c SET {", ".join(f"{column} = {merge}" for column, merge in _CUSTOMER_MERGE.items())}
    FROM cm_import_customer g
   WHERE g.existed AND c.org_id = $1 AND c.id = g.customer_id AND c.merged_into IS NULL
     AND {_differs_from_stored()}
  RETURNING c.id
)
INSERT INTO cm_import_touched (customer_id, change) SELECT id, 'customer' FROM changed
"""


async def update_matched_customers(conn: asyncpg.Connection, org_id: OrgId) -> None:
    """Write a matched customer only where a non-empty cell differs, so an unchanged one keeps `updated_at`."""
    await conn.execute(UPDATE_MATCHED_CUSTOMERS, org_id)


# --- contacts to be: the staged rows grouped by (customer, e-mail) --------------------------------

CREATE_CONTACT_GROUPS = """
CREATE TEMPORARY TABLE cm_import_contact (
  customer_id uuid, existed boolean, email citext, name text, is_primary boolean, primary_row integer,
  maybe_disagrees boolean
) ON COMMIT DROP
"""


async def create_contact_groups(conn: asyncpg.Connection) -> None:
    await conn.execute(CREATE_CONTACT_GROUPS)


# One row per (customer, e-mail): the last non-empty name and primary flag of the rows naming it.
GROUP_ROWS_INTO_CONTACTS = f"""
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


async def group_rows_into_contacts(conn: asyncpg.Connection) -> None:
    await conn.execute(GROUP_ROWS_INTO_CONTACTS)


INDEX_CONTACT_GROUPS = "CREATE INDEX ON cm_import_contact (customer_id, email)"


async def index_contact_groups(conn: asyncpg.Connection) -> None:
    await conn.execute(INDEX_CONTACT_GROUPS)


ANALYZE_CONTACT_GROUPS = "ANALYZE cm_import_contact"


async def analyze_contact_groups(conn: asyncpg.Connection) -> None:
    await conn.execute(ANALYZE_CONTACT_GROUPS)


# Several contacts of one customer marked primary in the file: the last marked one wins.
KEEP_LAST_PRIMARY_PER_CUSTOMER = """
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


async def keep_last_primary_per_customer(conn: asyncpg.Connection) -> set[uuid.UUID]:
    """The customers for which the file marked several contacts primary."""
    return {row["customer_id"] for row in await conn.fetch(KEEP_LAST_PRIMARY_PER_CUSTOMER)}


# --- stored contacts ------------------------------------------------------------------------------

# Before the new primary is set: at most one primary per customer is a unique index, checked per row.
UNMARK_REPLACED_PRIMARIES = _recording_contacts(
    "contact",
    """
  UPDATE customer_contact cc SET is_primary = false
    FROM cm_import_contact ic
   WHERE ic.existed AND ic.is_primary
     AND cc.org_id = $1 AND cc.customer_id = ic.customer_id AND cc.is_primary AND cc.email <> ic.email
  RETURNING cc.customer_id, cc.id
""",
)


async def unmark_replaced_primaries(conn: asyncpg.Connection, org_id: OrgId) -> None:
    await conn.execute(UNMARK_REPLACED_PRIMARIES, org_id)


UPDATE_MATCHED_CONTACTS = _recording_contacts(
    "contact",
    """
  UPDATE customer_contact cc
     SET name = coalesce(ic.name, cc.name), is_primary = coalesce(ic.is_primary, cc.is_primary)
    FROM cm_import_contact ic
   WHERE ic.existed AND cc.org_id = $1 AND cc.customer_id = ic.customer_id AND cc.email = ic.email
     AND (cc.name, cc.is_primary) IS DISTINCT FROM (coalesce(ic.name, cc.name), coalesce(ic.is_primary, cc.is_primary))
  RETURNING cc.customer_id, cc.id
""",
)


async def update_matched_contacts(conn: asyncpg.Connection, org_id: OrgId) -> None:
    await conn.execute(UPDATE_MATCHED_CONTACTS, org_id)


INSERT_NEW_CONTACTS = _recording_contacts(
    "created",
    """
  INSERT INTO customer_contact (org_id, customer_id, email, name, is_primary)
  SELECT $1, ic.customer_id, ic.email, ic.name, coalesce(ic.is_primary, false)
    FROM cm_import_contact ic
   WHERE NOT ic.existed
      OR NOT EXISTS (SELECT 1 FROM customer_contact cc
                      WHERE cc.org_id = $1 AND cc.customer_id = ic.customer_id AND cc.email = ic.email)
  ON CONFLICT (org_id, customer_id, email) DO NOTHING
  RETURNING customer_id, id
""",
)


async def insert_new_contacts(conn: asyncpg.Connection, org_id: OrgId) -> None:
    await conn.execute(INSERT_NEW_CONTACTS, org_id)


# --- what happened, for the report ----------------------------------------------------------------

ANALYZE_TOUCHED = "ANALYZE cm_import_touched"


async def analyze_touched(conn: asyncpg.Connection) -> None:
    await conn.execute(ANALYZE_TOUCHED)


# A group united into another one's customer (`row_count` 0) is not a customer of its own.
COUNT_CUSTOMERS_BY_OUTCOME = """
WITH touched AS (SELECT DISTINCT customer_id FROM cm_import_touched),
outcome AS (
  SELECT g.row_count,
         CASE WHEN NOT g.existed THEN 'imported' WHEN t.customer_id IS NOT NULL THEN 'updated' ELSE 'unchanged' END
           AS outcome
    FROM cm_import_customer g LEFT JOIN touched t ON t.customer_id = g.customer_id
)
SELECT outcome, count(*) FILTER (WHERE row_count > 0)::integer AS customers, sum(row_count)::integer AS rows
  FROM outcome GROUP BY outcome
"""


async def count_customers_by_outcome(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    """Per outcome ("imported", "updated", "unchanged") that occurred: its `customers` and their `rows`."""
    return {row["outcome"]: row for row in await conn.fetch(COUNT_CUSTOMERS_BY_OUTCOME)}


COUNT_CONTACT_CHANGES = """
SELECT count(*) FILTER (WHERE change = 'created')::integer AS created,
       count(DISTINCT contact_id) FILTER (WHERE change = 'contact')::integer AS updated
  FROM cm_import_touched
"""


async def count_contact_changes(conn: asyncpg.Connection) -> asyncpg.Record:
    """The contacts `created` and `updated`."""
    counts: asyncpg.Record = await conn.fetchrow(COUNT_CONTACT_CHANGES)
    return counts


# ERP numbers whose rows may hold different non-empty values for a field (the report's warnings), with the
# customer of each (several numbers of one customer are compared together).
ERP_NUMBERS_THAT_MAY_DISAGREE = """SELECT g.erp_customer_number, g.customer_id FROM cm_import_customer g
            WHERE g.erp_customer_number IS NOT NULL
              AND (g.maybe_disagrees OR g.customer_id = ANY($1::uuid[])
                   OR EXISTS (SELECT 1 FROM cm_import_contact ic
                               WHERE ic.customer_id = g.customer_id AND ic.maybe_disagrees))"""


async def erp_numbers_that_may_disagree(
    conn: asyncpg.Connection, multi_primary: set[uuid.UUID]
) -> dict[str, uuid.UUID]:
    """ERP numbers to check for disagreeing rows, each with its customer-to-be: their group or a contact of it
    is flagged, or the file marked several primary contacts for their customer (`multi_primary`)."""
    return {
        row["erp_customer_number"]: row["customer_id"]
        for row in await conn.fetch(ERP_NUMBERS_THAT_MAY_DISAGREE, list(multi_primary))
    }


STAGED_ROWS_OF_ERP_NUMBERS = "SELECT * FROM cm_import_row WHERE erp_customer_number = ANY($1::text[]) ORDER BY row_no"


async def staged_rows_of_erp_numbers(conn: asyncpg.Connection, erp_numbers: list[str]) -> list[asyncpg.Record]:
    """Every column of the staged rows of these ERP numbers, in file order."""
    rows: list[asyncpg.Record] = await conn.fetch(STAGED_ROWS_OF_ERP_NUMBERS, erp_numbers)
    return rows


ROWS_WITHOUT_ERP_NUMBER = (
    "SELECT first_row FROM cm_import_customer WHERE erp_customer_number IS NULL ORDER BY first_row"
)


async def rows_without_erp_number(conn: asyncpg.Connection) -> list[int]:
    """The rows that became customers without an ERP number, in file order."""
    return [record["first_row"] for record in await conn.fetch(ROWS_WITHOUT_ERP_NUMBER)]
