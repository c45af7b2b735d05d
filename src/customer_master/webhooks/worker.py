"""The webhook delivery worker: one per process (`serve` and `customer-master deliver`), any number at once.

Claims: the worker keeps one connection of its own and claims an endpoint with a session-level advisory
lock on it (`pg_try_advisory_lock`), held while one task of this process delivers that endpoint's events
and released when the task ends. No transaction is open across a call to a receiver. Two processes
never send to one endpoint at once, and when a worker dies (even by SIGKILL) its connection ends and the
server frees its claims at once. Should the claim connection be lost, the worker cancels its tasks
before claiming anew.

Waking: the same connection `LISTEN`s to `cm_events` (sent by every commit that adds events, migration
0007), so a new event is sent at once; otherwise the worker asks once a second which endpoints are due
(retries, other processes' leftovers), sooner when one of its own retries falls due. A slow receiver holds
only its own endpoint's task: at most `max_endpoints` endpoints are delivered at once per process, each
attempt has 10 s. Every few seconds the worker also refreshes `webhook_pending_events`.
"""

import asyncio
import contextlib
import logging
import uuid

import asyncpg
import httpx

from customer_master.auth.tenancy import OrgId
from customer_master.db.faults import DRIVER_ERRORS
from customer_master.db.session import CONNECTION_SETTINGS, Database, driver_connection
from customer_master.errors import ServiceUnavailable
from customer_master.history.listener import CHANNEL
from customer_master.metrics import WEBHOOK_PENDING_EVENTS
from customer_master.webhooks import delivery, repository, sender

log = logging.getLogger(__name__)

EndpointKey = tuple[OrgId, uuid.UUID]
RECONNECT_PAUSE_S = 2.0
# A database that is gone for a while (a restart, a terminated backend): waited for, logged without a trace.
DATABASE_ERRORS = (*DRIVER_ERRORS, OSError, ServiceUnavailable)


class DeliveryWorker:
    def __init__(
        self, database: Database, *, max_endpoints: int = 16, poll_s: float = 1.0, pending_every_s: float = 5.0
    ) -> None:
        self._database = database
        self._max_endpoints = max_endpoints
        self._poll_s = poll_s
        self._pending_every_s = pending_every_s
        self._claims: dict[EndpointKey, asyncio.Task[None]] = {}
        self._connection: asyncpg.Connection | None = None
        self._connection_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._next_due: float | None = None  # loop time of the earliest retry this process scheduled
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run in the background on the current event loop (until `stop`)."""
        self._task = asyncio.create_task(self.run(), name="webhook-delivery-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Deliver until cancelled; a lost database is waited for, not fatal."""
        self._client = sender.new_client()
        try:
            while True:
                try:
                    await self._connect()
                    await self._serve()
                except DATABASE_ERRORS as exc:
                    log.warning("webhook worker: database connection failed (%s); retrying", exc)
                except Exception:
                    log.exception("webhook worker: unexpected error; starting again")
                # Cancel the deliveries, then end the session, whose end frees every claim it held.
                await self._drop_claims()
                await self._close_connection()
                await asyncio.sleep(RECONNECT_PAUSE_S)
        finally:
            await self._drop_claims()
            await self._close_connection()
            await self._client.aclose()

    async def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            try:
                await asyncio.wait_for(connection.close(), 2)
            except Exception:  # a connection that cannot close cleanly is cut off
                connection.terminate()

    async def _connect(self) -> None:
        if self._connection is not None and not self._connection.is_closed():
            return
        settings = {**CONNECTION_SETTINGS, "application_name": "customer-master webhooks"}
        connection = await asyncpg.connect(self._database.url, server_settings=settings)
        connection.add_termination_listener(self._lost)
        await connection.add_listener(CHANNEL, self._notified)
        self._connection = connection

    def _notified(self, *_args: object) -> None:
        self._wake.set()

    def _lost(self, connection: object) -> None:
        if connection is not self._connection:  # closed by this worker itself (`_close_connection`)
            return
        log.warning("webhook worker: claim connection lost; its claims are gone, stopping their deliveries")
        for task in self._claims.values():
            task.cancel()
        self._wake.set()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        pending_due = 0.0
        while self._connection is not None and not self._connection.is_closed():
            self._wake.clear()
            if loop.time() >= pending_due:
                pending_due = loop.time() + self._pending_every_s
                await self._refresh_pending()
            await self._claim_due()
            timeout = self._poll_s
            if self._next_due is not None:
                timeout = max(0.0, min(timeout, self._next_due - loop.time()))
                if self._next_due <= loop.time() + timeout:
                    self._next_due = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        raise asyncpg.InterfaceError("the claim connection is closed")

    async def _claim_due(self) -> None:
        if len(self._claims) >= self._max_endpoints:
            return
        async with self._connection_lock:
            assert self._connection is not None
            due = await repository.due_endpoints(self._connection, self._max_endpoints + len(self._claims))
            for key in due:
                if len(self._claims) >= self._max_endpoints:
                    break
                if key in self._claims or not await repository.try_claim(self._connection, key[1]):
                    continue  # ours already, or another process's
                self._claims[key] = asyncio.create_task(self._deliver(key), name=f"webhook-{key[1]}")

    async def _deliver(self, key: EndpointKey) -> None:
        assert self._client is not None
        try:
            wait_s = await delivery.deliver_pending(self._database, self._client, *key)
            if wait_s is not None:
                due = asyncio.get_running_loop().time() + wait_s
                self._next_due = due if self._next_due is None else min(self._next_due, due)
        except asyncio.CancelledError:
            self._claims.pop(key, None)  # the claim goes with the connection, or with the worker
            raise
        except DATABASE_ERRORS as exc:
            log.warning("webhook worker: delivering endpoint %s stopped (%s); it is tried again", key[1], exc)
        except Exception:
            log.exception("webhook worker: delivering endpoint %s failed; it is tried again", key[1])
        await self._release(key)

    async def _release(self, key: EndpointKey) -> None:
        """Unlock, then forget: the other way round, the loop could claim it again on this session (a session
        lock counts), and one unlock would leave it held."""
        async with self._connection_lock:
            try:
                if self._connection is not None and not self._connection.is_closed():
                    await repository.release_claim(self._connection, key[1])
            except DATABASE_ERRORS as exc:
                log.warning("webhook worker: releasing a claim failed (%s)", exc)
            finally:
                self._claims.pop(key, None)
        self._wake.set()  # an event may have come while the task was finishing

    async def _drop_claims(self) -> None:
        tasks = list(self._claims.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._claims.clear()

    async def _refresh_pending(self) -> None:
        try:
            async with self._database.transaction() as session:
                WEBHOOK_PENDING_EVENTS.set(await repository.pending_events(await driver_connection(session)))
        except Exception as exc:  # a metric is not worth stopping deliveries for
            log.warning("webhook worker: counting pending events failed (%s)", exc)
