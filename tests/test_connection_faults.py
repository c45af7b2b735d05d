"""A connection belongs to one request until it is clean or discarded (issue 9), shown one fault at a time.

`test_chaos.py` mixes all faults under load; these show each one alone, on the test server's own pools: the
request transaction's and the read connections' (`Database.read`, for requests that only read).
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
import httpx
import pytest

from customer_master.db import session as session_module
from customer_master.db.session import Database, driver_connection
from customer_master.errors import ServiceUnavailable
from tests.conftest import Db, OrgContext, create_customer

SLOW = "SELECT pg_sleep(30)"


@contextlib.asynccontextmanager
async def transaction_connection(database: Database) -> AsyncIterator[asyncpg.Connection]:
    async with database.transaction() as session:
        yield await driver_connection(session)


Opener = Callable[[Database], AbstractAsyncContextManager[asyncpg.Connection]]
OPENERS: dict[str, Opener] = {"transaction": transaction_connection, "read": Database.read}
each_pool = pytest.mark.parametrize("opener", OPENERS.values(), ids=OPENERS.keys())


async def backend_pid(database: Database, opener: Opener) -> int:
    async with opener(database) as conn:
        pid: int = await conn.fetchval("SELECT pg_backend_pid()")
        return pid


async def start_slow_statement(database: Database, opener: Opener) -> tuple["asyncio.Task[Any]", int]:
    """A connection whose statement runs until it is stopped; and its backend's pid."""
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def slow() -> None:
        async with opener(database) as conn:
            started.set_result(await conn.fetchval("SELECT pg_backend_pid()"))
            await conn.fetchval(SLOW)

    task = asyncio.ensure_future(slow())
    return task, await started


async def statement_still_running(database: Database, pid: int) -> bool:
    conn = await asyncpg.connect(database.url)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid))
    finally:
        await conn.close()


def assert_none_left_in_use(db: Db) -> None:
    """No connection of the pools stays checked out. The test server's webhook worker takes one for a moment
    now and then, so "left" means still in use after a few seconds: a leaked connection never comes back."""
    deadline = time.monotonic() + 5
    while db.database.pool_connections()[0] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert db.database.pool_connections()[0] == 0


@each_pool
def test_a_cancelled_request_never_hands_its_connection_to_the_next(db: Db, opener: Opener) -> None:
    """The client went away mid-statement: its connection is closed, not pooled, and its backend stops."""

    async def scenario() -> tuple[int, set[int], bool]:
        task, pid = await start_slow_statement(db.database, opener)
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        following = {await backend_pid(db.database, opener) for _ in range(5)}
        for _ in range(50):  # the server notices the closed socket at once
            if not await statement_still_running(db.database, pid):
                return pid, following, False
            await asyncio.sleep(0.1)
        return pid, following, True

    pid, following, still_running = db.run(scenario())
    assert pid not in following
    assert not still_running
    assert_none_left_in_use(db)


@each_pool
def test_a_terminated_backend_is_a_503_and_its_connection_is_discarded(db: Db, opener: Opener) -> None:
    async def scenario() -> tuple[int, BaseException | None, set[int]]:
        task, pid = await start_slow_statement(db.database, opener)
        conn = await asyncpg.connect(db.database.url)
        try:
            await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await conn.close()
        error = await asyncio.gather(task, return_exceptions=True)
        return pid, error[0], {await backend_pid(db.database, opener) for _ in range(5)}

    pid, error, following = db.run(scenario())
    assert isinstance(error, ServiceUnavailable)
    assert pid not in following
    assert_none_left_in_use(db)


def test_a_read_that_finds_every_connection_busy_is_a_503_once_it_has_waited(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database is saturated: a read waits for a free connection as long as the pool allows, then 503."""
    monkeypatch.setattr(session_module, "READ_ACQUIRE_TIMEOUT_S", 0.2)

    async def scenario() -> tuple[BaseException | None, int]:
        database = Database(db.database.url, pool_size=1)
        try:
            async with database.read():
                waiting = await asyncio.gather(backend_pid(database, Database.read), return_exceptions=True)
            return waiting[0] if isinstance(waiting[0], BaseException) else None, await backend_pid(
                database, Database.read
            )
        finally:
            await database.dispose()

    error, pid_afterwards = db.run(scenario())
    assert isinstance(error, ServiceUnavailable)
    assert pid_afterwards > 0  # the connection held meanwhile serves again once free


def test_requests_after_the_pool_lost_its_backends_answer_200_or_503_never_500(
    db: Db, client: httpx.Client, org: OrgContext
) -> None:
    """Every pooled connection's backend is terminated while it sits idle (a restart, a failover): the read
    connections' (a customer, a search, /readyz, /me) and the request transactions' (history, imports)."""
    customer = create_customer(client, org)
    reads = [f"/api/v1/customers/{customer['id']}", "/api/v1/customers?q=muster", "/readyz", "/api/v1/me"]
    reads += [f"/api/v1/customers/{customer['id']}/history", "/api/v1/imports"]

    async def terminate_idle_backends() -> int:
        conn = await asyncpg.connect(db.database.url)
        try:
            terminated: int = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'customer-master' AND state = 'idle' AND pid <> pg_backend_pid()"
            )
            return terminated
        finally:
            await conn.close()

    for _ in range(3):
        assert db.run(terminate_idle_backends()) > 0
        with httpx.Client(base_url=str(client.base_url), headers=org.headers()) as http:
            statuses = [http.get(path).status_code for path in reads * 3]
        assert set(statuses) <= {200, 503}, statuses
    # Once the dead connections are gone, everything answers again.
    assert {client.get(path, headers=org.headers()).status_code for path in reads} == {200}
    assert_none_left_in_use(db)


def test_an_export_that_loses_its_connection_midway_is_cut_short_not_completed(
    db: Db, client: httpx.Client, org: OrgContext, caplog: pytest.LogCaptureFixture
) -> None:
    """Its status was sent with the first rows: only a broken transfer can tell the client, never a clean end."""
    rows = "".join(f"Export {n} GmbH,EX-{n},EUR,de-DE\n" for n in range(20_000))
    upload = {"file": ("c.csv", "name,erp_customer_number,default_currency,default_language\n" + rows, "text/csv")}
    assert client.post("/api/v1/imports/customers", files=upload, headers=org.headers()).status_code == 200

    def terminate_the_export() -> None:
        db.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'customer-master' AND query LIKE '%FROM customer c%' AND pid <> pg_backend_pid()"
        )

    def read_all() -> int:
        received = 0
        with client.stream("GET", "/api/v1/exports/customers.csv", headers=org.headers()) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                if not received:
                    terminate_the_export()
                received += len(chunk)
        return received

    server_log = logging.getLogger("uvicorn.error")  # uvicorn's loggers do not reach the root logger
    server_log.addHandler(caplog.handler)
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            read_all()
    finally:
        server_log.removeHandler(caplog.handler)
    assert not [record for record in caplog.records if record.exc_info], "a crash was logged, not a cut-short"
    assert "response cut short" in caplog.text
    assert_none_left_in_use(db)
