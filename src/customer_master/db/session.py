"""The engine and the one-transaction-per-request session."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from customer_master.config import Settings
from customer_master.db.embedded import DATABASE_NAME, ensure_database, start_embedded_server


async def resolve_database_url(settings: Settings) -> str:
    """`DATABASE_URL` when set, else the embedded server's database (started on demand)."""
    if settings.database_url:
        return settings.database_url
    server_url = await asyncio.to_thread(start_embedded_server, settings.data_dir)
    return await ensure_database(server_url, DATABASE_NAME)


def create_engine(database_url: str, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine for a plain libpq URL (`postgresql://…`, also with `?host=/socket/dir`).

    asyncpg parses libpq URLs itself, so the URL is handed to it unchanged instead of being
    rewritten into SQLAlchemy's dialect form.
    """

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(database_url, server_settings={"application_name": "customer-master"})

    engine = create_async_engine(
        "postgresql+asyncpg://",
        async_creator=connect,
        pool_size=pool_size,
        max_overflow=pool_size,
    )
    # Instead of `pool_pre_ping`, which costs three round trips per checkout (BEGIN, ping, ROLLBACK:
    # a third of a get-one request), drop connections the server has closed (a restart, a terminated
    # backend): asyncpg notices the closed socket by itself. A connection lost mid-request is a 503.
    event.listen(engine.sync_engine.pool, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this connection")  # the pool connects anew


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under the session, for the hot read paths.

    SQLAlchemy costs a few hundred µs per statement, asyncpg alone tens. What is sent here joins the
    session's transaction once SQLAlchemy has begun it (it does so lazily, with its first statement);
    before that each statement commits by itself, which for a single read is the same thing.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver


class Database:
    """Holds the engine and hands out sessions; one per process."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the body succeeds, rolled back when it raises."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
