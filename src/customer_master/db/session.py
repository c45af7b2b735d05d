"""The engine and the one-transaction-per-request session."""

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy import Connection, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

from customer_master.config import Settings
from customer_master.db.embedded import DATABASE_NAME, ensure_database, start_embedded_server
from customer_master.db.faults import DatabaseUnreachable, is_connection_lost, leaves_connection_clean
from customer_master.errors import AppError, ServiceUnavailable
from customer_master.metrics import DB_POOL_CONNECTIONS

_DRIVER = "customer_master.driver_connection"


class _Session(Session):
    """Remembers the driver connection it began its transaction on, so that `_end_failed` can close it
    without checking out a connection of its own."""


@event.listens_for(_Session, "after_begin")
def _remember_driver_connection(session: Session, transaction: Any, connection: Connection) -> None:
    session.info[_DRIVER] = connection.connection.driver_connection


async def resolve_database_url(settings: Settings) -> str:
    """`DATABASE_URL` when set, else the embedded server's database (started on demand)."""
    if settings.database_url:
        return settings.database_url
    server_url = await asyncio.to_thread(start_embedded_server, settings.data_dir)
    return await ensure_database(server_url, DATABASE_NAME)


# A backend whose client has gone (a killed CLI import, a `kill -9` of the server) notices it within
# seconds, even in the middle of a long statement or a lock wait, and rolls back: its locks (the org's
# import lock) are free again (PostgreSQL ≥ 14).
CONNECTION_SETTINGS = {"application_name": "customer-master", "client_connection_check_interval": "2s"}


async def connect(database_url: str) -> asyncpg.Connection:
    """A new connection of the service's pools.

    asyncpg parses libpq URLs itself (`postgresql://…`, also with `?host=/socket/dir`), so the URL is handed
    to it unchanged instead of being rewritten into SQLAlchemy's dialect form.
    """
    try:
        return await asyncpg.connect(database_url, server_settings=CONNECTION_SETTINGS)
    except OSError as exc:  # refused, unreachable, timed out, a socket file gone while the server restarts
        raise DatabaseUnreachable(str(exc)) from exc


def create_engine(database_url: str, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine for a plain libpq URL."""
    engine = create_async_engine(
        "postgresql+asyncpg://",
        async_creator=lambda: connect(database_url),
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


# The read pool's wait for a free connection, as SQLAlchemy's pool waits by default: then the database is
# saturated (503).
READ_ACQUIRE_TIMEOUT_S = 30.0

# What a read is given: the request transaction's session, or a read connection (`Database.read`).
Reads: TypeAlias = AsyncSession | asyncpg.Connection


async def reading_connection(reads: Reads) -> asyncpg.Connection:
    """The driver connection to read on."""
    return await driver_connection(reads) if isinstance(reads, AsyncSession) else reads


async def _keep_connection(connection: asyncpg.Connection) -> None:
    """A read connection goes back to the pool as it is: reads change no session state (no `SET` but
    `SET LOCAL`, no advisory lock, no `LISTEN`, no cursor), and asyncpg (≥ 0.30) has already rolled back a
    transaction left open before it calls this. Its default reset costs a round trip per request."""


class Database:
    """Holds the engine and hands out sessions and read connections; one per process."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, sync_session_class=_Session)
        self._pool_size = pool_size
        self._read_pool: asyncpg.Pool | None = None
        _LIVE.add(self)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the body succeeds, rolled back when it raises.

        A connection that may be left in the middle of an operation (see `faults.leaves_connection_clean`)
        is closed, not rolled back and returned to the pool: a connection belongs to one request until it
        is clean or discarded. A lost connection becomes `ServiceUnavailable` (503): nothing was applied,
        unless it was lost during the commit itself, whose outcome no client can know.
        """
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException as exc:
                await _end_failed(session, exc)
                if is_connection_lost(exc) and not isinstance(exc, AppError):
                    raise ServiceUnavailable() from exc
                raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for reads, outside any transaction (each statement sees its own snapshot).

        For read-only requests: no ORM session, no BEGIN and COMMIT round trips. The fault rules are the
        transaction's: a connection that may be mid-operation is closed, not pooled; a lost one is a 503.
        """
        pool = await self._reads()
        try:
            connection = await pool.acquire(timeout=READ_ACQUIRE_TIMEOUT_S)
        except TimeoutError as exc:  # no pooled connection became free in time: the database is saturated
            raise ServiceUnavailable() from exc
        except Exception as exc:
            if is_connection_lost(exc):
                raise ServiceUnavailable() from exc
            raise
        try:
            yield connection
        except BaseException as exc:
            if not leaves_connection_clean(exc):
                # A graceful close would wait for the operation in flight. A connection found closed has
                # already been taken back by the pool: nothing is left to end.
                with contextlib.suppress(asyncpg.InterfaceError):
                    connection.terminate()
            if is_connection_lost(exc) and not isinstance(exc, AppError):
                raise ServiceUnavailable() from exc
            raise
        finally:
            await pool.release(connection)

    async def _reads(self) -> asyncpg.Pool:
        if self._read_pool is None:
            self._read_pool = asyncpg.create_pool(
                min_size=0, max_size=self._pool_size, connect=lambda *_, **__: connect(self.url), reset=_keep_connection
            )
            await self._read_pool  # with min_size=0 it connects nothing, so no other task runs meanwhile
        return self._read_pool

    async def ping(self, timeout_s: float) -> None:
        """`SELECT 1` on a pooled connection within `timeout_s`, else an exception."""
        async with asyncio.timeout(timeout_s), self.read() as connection:
            await connection.fetchval("SELECT 1")

    def pool_connections(self) -> tuple[int, int]:
        """(in use, idle) connections of the pools."""
        pool = self.engine.pool
        in_use, idle = getattr(pool, "checkedout", lambda: 0)(), getattr(pool, "checkedin", lambda: 0)()
        if self._read_pool is not None:
            read_idle = self._read_pool.get_idle_size()
            in_use, idle = in_use + self._read_pool.get_size() - read_idle, idle + read_idle
        return in_use, idle

    async def dispose(self) -> None:
        _LIVE.discard(self)
        if self._read_pool is not None:
            await self._read_pool.close()
            self._read_pool = None  # as the engine, a disposed database opens anew when used again
        await self.engine.dispose()


async def _end_failed(session: AsyncSession, exc: BaseException) -> None:
    """Roll back a clean connection; close one that may be mid-operation, without a word to the server."""
    if leaves_connection_clean(exc) or not session.in_transaction():
        try:
            await session.rollback()
            return
        except Exception:  # the connection broke meanwhile: the error that ended the work is the one to tell
            pass
    driver: asyncpg.Connection | None = session.info.get(_DRIVER)
    if driver is not None:
        driver.terminate()  # a graceful close would wait for the operation in flight, or fail on it
    await session.invalidate()


# Every engine of the process, for the pool gauges of /metrics.
_LIVE: "weakref.WeakSet[Database]" = weakref.WeakSet()
DB_POOL_CONNECTIONS.labels("in_use").set_function(lambda: sum(db.pool_connections()[0] for db in list(_LIVE)))
DB_POOL_CONNECTIONS.labels("idle").set_function(lambda: sum(db.pool_connections()[1] for db in list(_LIVE)))
