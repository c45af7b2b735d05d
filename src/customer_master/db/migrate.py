"""Run the Alembic migrations programmatically (no alembic.ini needed)."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(database_url: str) -> None:
    """Migrate to the newest revision. `env.py` runs its own event loop: when this thread already runs one
    (a caller inside a loop), the migration runs in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(alembic_config(database_url), "head")
        return
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(command.upgrade, alembic_config(database_url), "head").result()


async def upgrade_to_head_async(database_url: str) -> None:
    """From inside a running event loop: env.py runs its own loop, so give it a thread."""
    await asyncio.to_thread(upgrade_to_head, database_url)


def execute_script(sql: str) -> None:
    """Run a multi-statement SQL script inside a migration.

    SQLAlchemy's asyncpg adapter prepares every statement, and a prepared statement holds only one
    command; asyncpg's own `execute` without arguments sends the script as one simple query.
    """
    from alembic import op
    from sqlalchemy.util import await_

    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None
    await_(driver_connection.execute(sql))
