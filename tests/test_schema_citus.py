"""The schema is ready for Citus with `org_id` as the distribution column (DESIGN.md "Scale-out").

Citus needs the distribution column in every primary key, unique index and exclusion constraint of a
distributed table, and in every foreign key between two distributed tables (the same position on both
sides). A reference table (a copy on every node) may not refer to a distributed one. This test reads
the migrated database's catalog (`pg_index`, `pg_constraint`) and fails on each key that breaks that,
and on each table that is neither distributed nor reference: a new table must be classified here.

Distributed by `org_id` — the tables that grow with an org's data, or are written with it:

- `customer`, `customer_contact`: the org's master data.
- `import_run`: one record per import.
- `idempotency_key`: one record per `POST` sent with an `Idempotency-Key`, kept.
- `customer_name_change`: the changes of the org's customer names, written by the triggers on `customer`
  in the transaction that changes them.
- `customer_name_version`: one row per org, but moved by every transaction that changes the org's names;
  beside its customers it is a write on the org's own node, as a reference table a write on every node.
- `change_entry`, `change_transaction`: the history and event feed, one entry per changed customer or
  contact, written by the triggers in the transaction of the change.
- `change_feed_position`: one row per org, moved at the commit of every transaction that records changes
  (as `customer_name_version`).
- `webhook_endpoint`, `webhook_delivery`: an org's webhook endpoints (each with its place in the org's feed)
  and the log of every delivery attempt, written by the delivery worker beside the feed it follows. The
  worker's question "which endpoints are due" spans every org: a multi-shard query, once a second.
- `customer_erp_alias`, `customer_merge`, `duplicate_dismissal`: a survivor's ERP aliases, each merge with
  what undo needs, the pairs dismissed as not duplicates — per org, beside the customers they name.

Reference tables — small, read by every request, left out of the distributed list:

- `org`: the tenants themselves (a few rows per customer org, not per customer); every request resolves
  the org, and every distributed table's foreign key points to it.
- `app_user`: a handful of users per org, found at login by org slug and e-mail.
- `api_token`: a handful per org, found by `token_hash` alone on every API request, before the org is
  known (so its unique hash could not carry `org_id`).
- `login_failure`: no `org_id` (keyed by "org-slug:email"); a few short-lived rows per account for
  login throttling, deleted after a successful login.

`alembic_version` is Alembic's bookkeeping, on the coordinator only.
"""

import uuid
from collections.abc import Set
from dataclasses import dataclass

import asyncpg
import pytest
from alembic import command

from customer_master.db.migrate import alembic_config, upgrade_to_head
from tests.conftest import in_own_thread, run_async

ORG_ID = "org_id"  # the distribution column
DISTRIBUTED = frozenset(
    {
        "customer",
        "customer_contact",
        "import_run",
        "idempotency_key",
        "customer_name_change",
        "customer_name_version",
        "change_entry",
        "change_transaction",
        "change_feed_position",
        "webhook_endpoint",
        "webhook_delivery",
        "customer_erp_alias",
        "customer_merge",
        "duplicate_dismissal",
    }
)
REFERENCE = frozenset({"org", "app_user", "api_token", "login_failure"})
BOOKKEEPING = frozenset({"alembic_version"})

TABLES = """
SELECT c.relname AS table_name, a.attnotnull AS org_id_not_null, format_type(a.atttypid, a.atttypmod) AS org_id_type
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped
 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""
# Primary keys, unique indexes (constraints or not, partial too) and exclusion constraints, with their key
# columns in order (INCLUDE columns left out; an expression is NULL).
UNIQUE_KEYS = """
SELECT t.relname AS table_name, i.relname AS index_name,
       CASE WHEN x.indisprimary THEN 'primary key' WHEN x.indisexclusion THEN 'exclusion constraint'
            ELSE 'unique index' END AS kind,
       ARRAY(SELECT a.attname FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k (attnum, position)
               LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
              WHERE k.position <= x.indnkeyatts ORDER BY k.position) AS columns
  FROM pg_index x
  JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = $1 AND (x.indisunique OR x.indisexclusion)
"""
FOREIGN_KEYS = """
SELECT con.conname AS name, t.relname AS table_name, r.relname AS referenced_table,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k (attnum, position)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.position) AS columns,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k (attnum, position)
               JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.position)
         AS referenced_columns
  FROM pg_constraint con
  JOIN pg_class t ON t.oid = con.conrelid
  JOIN pg_class r ON r.oid = con.confrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = $1 AND con.contype = 'f'
"""


@dataclass(frozen=True)
class Classification:
    distributed: Set[str] = DISTRIBUTED
    reference: Set[str] = REFERENCE
    bookkeeping: Set[str] = BOOKKEEPING


def _table_problems(found: dict[str, asyncpg.Record], tables: Classification) -> list[str]:
    problems = []
    for name in sorted(found.keys() - tables.distributed - tables.reference - tables.bookkeeping):
        kind = "has" if found[name]["org_id_type"] else "has no"
        problems.append(f"{name} ({kind} {ORG_ID}) is neither distributed nor a reference table: classify it")
    for name in sorted((tables.distributed | tables.reference) - found.keys()):
        problems.append(f"{name} is classified but does not exist")
    distributed = tables.distributed & found.keys()
    for name in sorted(distributed):
        if found[name]["org_id_type"] is None:
            problems.append(f"{name} is distributed but has no {ORG_ID} column")
        elif not found[name]["org_id_not_null"]:
            problems.append(f"{name}.{ORG_ID} may be NULL")
    if len({found[name]["org_id_type"] for name in distributed}) > 1:
        problems.append(f"the distributed tables' {ORG_ID} columns differ in type: they cannot be co-located")
    return problems


def _unique_key_problems(unique_keys: list[asyncpg.Record], distributed: Set[str]) -> list[str]:
    return [
        f"{key['table_name']}: {key['kind']} {key['index_name']}"
        f" ({', '.join(column or '(expression)' for column in key['columns'])}) lacks {ORG_ID}"
        for key in unique_keys
        if key["table_name"] in distributed and ORG_ID not in key["columns"]
    ]


def _foreign_key_problems(foreign_keys: list[asyncpg.Record], tables: Classification) -> list[str]:
    problems = []
    for fk in foreign_keys:
        source, target = fk["table_name"], fk["referenced_table"]
        pairs = list(zip(fk["columns"], fk["referenced_columns"], strict=True))
        if source in tables.distributed and target in tables.distributed and (ORG_ID, ORG_ID) not in pairs:
            problems.append(
                f"{source}: foreign key {fk['name']} ({', '.join(fk['columns'])}) to {target}"
                f" ({', '.join(fk['referenced_columns'])}) does not match {ORG_ID} to {ORG_ID}"
            )
        elif source in tables.reference and target in tables.distributed:
            problems.append(
                f"{source}: foreign key {fk['name']} of a reference table to the distributed table {target}"
            )
    return problems


async def citus_problems(url: str, schema: str = "public", tables: Classification | None = None) -> list[str]:
    """Every table and key of `schema` that Citus would refuse under this classification, in words."""
    tables = tables or Classification()
    conn = await asyncpg.connect(url)
    try:
        found = {row["table_name"]: row for row in await conn.fetch(TABLES, schema, ORG_ID)}
        unique_keys = await conn.fetch(UNIQUE_KEYS, schema)
        foreign_keys = await conn.fetch(FOREIGN_KEYS, schema)
    finally:
        await conn.close()
    return (
        _table_problems(found, tables)
        + _unique_key_problems(unique_keys, tables.distributed & found.keys())
        + _foreign_key_problems(foreign_keys, tables)
    )


def test_every_key_of_a_distributed_table_holds_org_id_and_every_table_is_classified(database_url: str) -> None:
    assert run_async(citus_problems(database_url)) == []


async def _seed(url: str) -> dict[str, uuid.UUID]:
    """An org with a customer, its primary and one other contact, and an import record."""
    ids = {name: uuid.uuid4() for name in ("org", "customer", "contact", "import_run")}
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO org (id, name, slug) VALUES ($1, 'Citus', 'citus')", ids["org"])
        await conn.execute(
            "INSERT INTO customer (id, org_id, name, default_currency, default_language)"
            " VALUES ($1, $2, 'Muster GmbH', 'EUR', 'de-DE')",
            ids["customer"],
            ids["org"],
        )
        await conn.execute(
            "INSERT INTO customer_contact (id, org_id, customer_id, email, is_primary)"
            " VALUES ($1, $2, $3, 'a@muster.example', true), (gen_random_uuid(), $2, $3, 'b@muster.example', false)",
            ids["contact"],
            ids["org"],
            ids["customer"],
        )
        await conn.execute(
            "INSERT INTO import_run (id, org_id, source, dry_run, encoding, delimiter, row_count, imported, updated,"
            " unchanged, failed, contacts_created, contacts_updated, duration_ms)"
            " VALUES ($1, $2, 'cli', false, 'utf-8', ',', 1, 1, 0, 0, 0, 2, 0, 5)",
            ids["import_run"],
            ids["org"],
        )
    finally:
        await conn.close()
    return ids


def test_the_keys_0005_left_without_org_id_are_found_and_0006_adds_it_to_an_install_with_data(
    scratch_database: str,
) -> None:
    in_own_thread(command.upgrade, alembic_config(scratch_database), "0005")
    ids = run_async(_seed(scratch_database))
    before = run_async(citus_problems(scratch_database))
    for expected in (
        "customer: primary key customer_pkey (id) lacks org_id",
        "customer_contact: primary key customer_contact_pkey (id) lacks org_id",
        "customer_contact: unique index uq_contact_customer_email (customer_id, email) lacks org_id",
        "customer_contact: unique index uq_contact_one_primary (customer_id) lacks org_id",
        "import_run: primary key import_run_pkey (id) lacks org_id",
    ):
        assert expected in before

    in_own_thread(upgrade_to_head, scratch_database)

    assert run_async(citus_problems(scratch_database)) == []

    async def after() -> None:
        conn = await asyncpg.connect(scratch_database)
        try:
            contacts = await conn.fetch(
                "SELECT email::text, is_primary FROM customer_contact WHERE org_id = $1 AND customer_id = $2"
                " ORDER BY email",
                ids["org"],
                ids["customer"],
            )
            assert [tuple(row) for row in contacts] == [("a@muster.example", True), ("b@muster.example", False)]
            assert await conn.fetchval("SELECT count(*) FROM import_run WHERE org_id = $1", ids["org"]) == 1
            # The rules mean what they meant: one e-mail once per customer, one primary contact per customer.
            with pytest.raises(asyncpg.UniqueViolationError, match="uq_contact_customer_email"):
                await conn.execute(
                    "INSERT INTO customer_contact (org_id, customer_id, email) VALUES ($1, $2, 'A@muster.example')",
                    ids["org"],
                    ids["customer"],
                )
            with pytest.raises(asyncpg.UniqueViolationError, match="uq_contact_one_primary"):
                await conn.execute(
                    "UPDATE customer_contact SET is_primary = true WHERE org_id = $1 AND email = 'b@muster.example'",
                    ids["org"],
                )
            await conn.execute("DELETE FROM customer WHERE org_id = $1 AND id = $2", ids["org"], ids["customer"])
            assert await conn.fetchval("SELECT count(*) FROM customer_contact WHERE org_id = $1", ids["org"]) == 0
        finally:
            await conn.close()

    run_async(after())


SCRATCH_TABLES = """
CREATE TABLE tenant (id uuid PRIMARY KEY);
CREATE TABLE shared (id uuid PRIMARY KEY, org_id uuid, code text UNIQUE);
CREATE TABLE parent (org_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (org_id, id), UNIQUE (id));
CREATE UNIQUE INDEX parent_lower_id ON parent (lower(id::text)) INCLUDE (org_id);
CREATE TABLE child (
  org_id uuid NOT NULL REFERENCES tenant (id),
  parent_id uuid NOT NULL REFERENCES parent (id),
  other_org uuid,
  FOREIGN KEY (other_org, parent_id) REFERENCES parent (org_id, id)
);
CREATE TABLE loose (org_id uuid);
CREATE TABLE unlisted (org_id uuid NOT NULL);
CREATE TABLE pointing (org_id uuid NOT NULL, parent_id uuid);
ALTER TABLE shared ADD FOREIGN KEY (org_id, id) REFERENCES parent (org_id, id);
"""


def test_the_check_names_each_key_and_table_citus_would_refuse(scratch_database: str) -> None:
    async def create() -> None:
        conn = await asyncpg.connect(scratch_database)
        try:
            await conn.execute(SCRATCH_TABLES)
        finally:
            await conn.close()

    run_async(create())
    tables = Classification(
        distributed=frozenset({"parent", "child", "loose", "missing"}),
        reference=frozenset({"tenant", "shared", "pointing"}),
        bookkeeping=frozenset(),
    )

    problems = run_async(citus_problems(scratch_database, tables=tables))

    assert sorted(problems) == sorted(
        [
            "unlisted (has org_id) is neither distributed nor a reference table: classify it",
            "missing is classified but does not exist",
            "loose.org_id may be NULL",
            "parent: unique index parent_id_key (id) lacks org_id",
            "parent: unique index parent_lower_id ((expression)) lacks org_id",
            "child: foreign key child_parent_id_fkey (parent_id) to parent (id) does not match org_id to org_id",
            "child: foreign key child_other_org_parent_id_fkey (other_org, parent_id) to parent (org_id, id)"
            " does not match org_id to org_id",
            "shared: foreign key shared_org_id_id_fkey of a reference table to the distributed table parent",
        ]
    )
