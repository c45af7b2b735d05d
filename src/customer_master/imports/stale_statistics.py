"""Refreshing the statistics of `customer` and `customer_contact` when they are far behind the org's rows.

The planner estimates a table's rows as the density of its last `ANALYZE` or `VACUUM` (rows per page)
times its pages now. Taken while the table was empty but its pages were not (after a `DELETE`, before a
`VACUUM` gave them back), that density is 0: the table looks empty whatever it holds, every index that
starts with `org_id` looks as good as any other, and a lookup of one row — the contacts' foreign-key
check by (org_id, id), which PostgreSQL plans itself, or a contact's by (org_id, customer_id, email) — may walk
the org's whole range of another index, once per row: quadratic (100,000 rows ran for many minutes).
An `ANALYZE` in the transaction counts the rows it has written, too, and replaces the cached plans.
"""

import json

import asyncpg

from customer_master.auth.tenancy import OrgId

# A table's statistics are stale when the planner expects fewer than STALE_BELOW_ROWS rows in it and the
# org alone has more than STALE_RATIO times as many plus STALE_MIN_ROWS (`refresh_stale_statistics`).
STALE_BELOW_ROWS = 100_000
STALE_RATIO = 4
STALE_MIN_ROWS = 1_000
# How long an import waits to analyze a table that someone else is analyzing or vacuuming (an autovacuum
# that blocks us gives way after `deadlock_timeout`, 1 s by default).
ANALYZE_LOCK_TIMEOUT = "2s"


async def refresh_stale_statistics(conn: asyncpg.Connection, org_id: OrgId, *tables: str) -> None:
    """`ANALYZE` each table whose statistics say it holds far fewer rows than the org alone has in it.

    Only when stale, so that it is rare: `ANALYZE` holds a lock until we commit that another `ANALYZE` of
    the table waits for (writers do not). Its row count is visible to everyone at once (it is not
    transactional), so an import into another org that comes later finds the statistics fresh; one that
    tried at the same moment gives up after `ANALYZE_LOCK_TIMEOUT` and goes on with that row count.
    """
    for table in tables:
        estimate = await _planned_rows(conn, table)
        if estimate >= STALE_BELOW_ROWS:
            continue
        if await _org_rows_exceed(conn, table, org_id, STALE_RATIO * estimate + STALE_MIN_ROWS):
            await _analyze_with_server_target(conn, table)


async def _planned_rows(conn: asyncpg.Connection, table: str) -> int:
    """How many rows the planner believes `table` holds."""
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) SELECT FROM ONLY {table}")
    return int((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"])


async def _org_rows_exceed(conn: asyncpg.Connection, table: str, org_id: OrgId, limit: int) -> bool:
    """Whether the org holds more than `limit` rows in `table`, counted no further than needed to know it."""
    counted: int = await conn.fetchval(
        f"SELECT count(*) FROM (SELECT FROM {table} WHERE org_id = $1 LIMIT $2) AS org_rows", org_id, limit + 1
    )
    return counted > limit


READ_ANALYZE_SETTINGS = (
    "SELECT current_setting('lock_timeout') AS lock_timeout,"
    " current_setting('default_statistics_target') AS target,"
    " (SELECT reset_val FROM pg_settings WHERE name = 'default_statistics_target') AS server_target"
)
SAVEPOINT_BEFORE_ANALYZE = "SAVEPOINT cm_import_analyze"
ROLL_BACK_ANALYZE = "ROLLBACK TO SAVEPOINT cm_import_analyze; RELEASE SAVEPOINT cm_import_analyze"
RELEASE_ANALYZE = "RELEASE SAVEPOINT cm_import_analyze"
RESTORE_SETTINGS = "SELECT set_config('lock_timeout', $1, true), set_config('default_statistics_target', $2, true)"


async def _analyze_with_server_target(conn: asyncpg.Connection, table: str) -> None:
    """`ANALYZE table`, giving up after `ANALYZE_LOCK_TIMEOUT`; the transaction's settings stay as they were."""
    settings = await conn.fetchrow(READ_ANALYZE_SETTINGS)
    await conn.execute(SAVEPOINT_BEFORE_ANALYZE)
    try:
        # With the server's statistics target, not the work tables' small one: these statistics stay.
        await conn.execute(
            f"SET LOCAL lock_timeout = '{ANALYZE_LOCK_TIMEOUT}';"
            f" SET LOCAL default_statistics_target = {int(settings['server_target'])}; ANALYZE {table}"
        )
    except asyncpg.LockNotAvailableError:
        await conn.execute(ROLL_BACK_ANALYZE)
        return
    await conn.execute(RELEASE_ANALYZE)
    await conn.execute(RESTORE_SETTINGS, settings["lock_timeout"], settings["target"])
