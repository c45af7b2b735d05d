"""The engine and the one-transaction-per-request session."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
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

    return create_async_engine(
        "postgresql+asyncpg://",
        async_creator=connect,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )


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
