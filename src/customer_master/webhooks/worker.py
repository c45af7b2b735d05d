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
attempt has 10 s. Every few seconds the worker also refreshes `webhook_pending_events` (in a task of its
own, so that the count never holds up a claim).

The deliveries' statements (read the endpoint and its next events, record an attempt) go through a small
pool of the worker's own (`POOL_SIZE` connections at most), not the API's: a burst of deliveries never makes
a request wait for a connection, and each statement is one round trip (no transaction around it, nothing
reset on release; its commit does not wait for the disk: `POOL_SETTINGS`). Each endpoint's task sends
through a channel of its own (`sender.Channels`), which keeps its connection to the receiver for the next
event.
"""

import asyncio
import contextlib
import logging
import uuid

import asyncpg

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
POOL_SIZE = 4  # the deliveries' connections: each statement is short, and a task holds one only for it
# While endpoints are being delivered, a burst of commits (each one a NOTIFY) asks which endpoints are due at
# most this often: the running tasks read their new events without being told, and an endpoint that is not
# claimed yet waits at most this much longer.
CLAIM_GAP_S = 0.025
SETTINGS = {**CONNECTION_SETTINGS, "application_name": "customer-master webhooks"}
# The deliveries' records and cursor moves commit without waiting for the disk: one endpoint's events go one
# after the other, and a wait for the WAL flush per event (~2 ms, 10–100 ms when the disk is busy) would be
# most of each step. What this risks is bounded by the contract itself: such a commit is visible at once and
# survives any crash of this process (the crash test kills it); only a crash of the database server itself
# can lose the last ~0.6 s of them (3 × `wal_writer_delay`), and then those events are sent again in order —
# at least once, as after a crash between sending and recording. Everything else (endpoints, the feed)
# keeps the server's `synchronous_commit`.
POOL_SETTINGS = {**SETTINGS, "synchronous_commit": "off"}
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
        self._channels = sender.Channels()
        self._pool: asyncpg.Pool | None = None
        self._pending_task: asyncio.Task[None] | None = None
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
        # No connection yet (min_size 0): the first statement connects, and a database that is down now is
        # waited for like any other loss.
        self._pool = await asyncpg.create_pool(
            self._database.url, min_size=0, max_size=POOL_SIZE, server_settings=POOL_SETTINGS, reset=_keep_session
        )
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
            if self._pending_task is not None:
                self._pending_task.cancel()
            await self._channels.close()
            try:
                await asyncio.wait_for(self._pool.close(), 2)
            except Exception:  # a database that is gone: the connections are cut off
                self._pool.terminate()

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
        connection = await asyncpg.connect(self._database.url, server_settings=SETTINGS)
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
        last_pass = -CLAIM_GAP_S
        while self._connection is not None and not self._connection.is_closed():
            if self._claims:  # busy: its tasks read the new events themselves; others wait a moment
                await asyncio.sleep(max(0.0, last_pass + CLAIM_GAP_S - loop.time()))
            last_pass = loop.time()
            self._wake.clear()
            if loop.time() >= pending_due and (self._pending_task is None or self._pending_task.done()):
                pending_due = loop.time() + self._pending_every_s
                self._pending_task = asyncio.create_task(self._refresh_pending(), name="webhook-pending-events")
            await self._claim_due()
            await self._channels.close_idle()
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
        assert self._pool is not None
        try:
            channel = self._channels.take(key[1])
            try:
                wait_s = await delivery.deliver_pending(self._pool, channel, *key)
            finally:
                self._channels.give_back(key[1])
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
        """`webhook_pending_events` now (on a connection of the API's pool: once every few seconds)."""
        try:
            async with self._database.transaction() as session:
                WEBHOOK_PENDING_EVENTS.set(await repository.pending_events(await driver_connection(session)))
        except Exception as exc:  # a metric is not worth stopping deliveries for
            log.warning("webhook worker: counting pending events failed (%s)", exc)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """A delivery connection goes back to the pool as it is: its statements set nothing that would last (an
    open transaction is still rolled back by asyncpg itself)."""
