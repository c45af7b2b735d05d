"""Alembic environment: runs the migrations over asyncpg, one process at a time."""

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from customer_master.db.session import create_engine

# An arbitrary constant: the advisory lock that lets only one process migrate at a time
# (`serve` and `customer-master migrate` may start together on the same database).
MIGRATION_LOCK_ID = 4_711_000_001


def run_migrations(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    try:
        context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()


async def run_async() -> None:
    engine = create_engine(context.config.attributes["database_url"], pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


asyncio.run(run_async())
