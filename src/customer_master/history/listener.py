"""Long polling without polling: one `LISTEN cm_events` connection per process wakes the waiting readers.

The commit that stamps a transaction's events sends `NOTIFY cm_events, '<org id>'` (migration 0007).
A reader registers before it reads, so an event that commits between its read and its wait still wakes
it. When the connection is lost, every waiter is woken (it reads again: nothing is missed, at worst one
read too many) and the next waiter connects anew.
"""

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from customer_master.db.session import CONNECTION_SETTINGS
from customer_master.errors import ServiceUnavailable

log = logging.getLogger(__name__)
CHANNEL = "cm_events"


class FeedListener:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._connection: asyncpg.Connection | None = None
        self._connecting = asyncio.Lock()
        self._waiters: dict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)

    @asynccontextmanager
    async def subscription(self, org_id: uuid.UUID) -> AsyncIterator[asyncio.Event]:
        """An event that is set when one of the org's transactions commits events (or the listener fails)."""
        await self._ensure_listening()
        woken = asyncio.Event()
        self._waiters[org_id].add(woken)
        try:
            yield woken
        finally:
            self._waiters[org_id].discard(woken)
            if not self._waiters[org_id]:
                del self._waiters[org_id]

    async def _ensure_listening(self) -> None:
        async with self._connecting:
            if self._connection is not None and not self._connection.is_closed():
                return
            try:
                connection = await asyncpg.connect(self._dsn, server_settings=CONNECTION_SETTINGS)
            except OSError as exc:
                raise ServiceUnavailable() from exc
            connection.add_termination_listener(self._lost)
            await connection.add_listener(CHANNEL, self._notified)
            self._connection = connection

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            org_id = uuid.UUID(payload)
        except ValueError:
            return
        for woken in self._waiters.get(org_id, ()):
            woken.set()

    def _lost(self, _connection: object) -> None:
        log.warning("event listener connection lost; waiting readers read again")
        self._connection = None
        for waiters in self._waiters.values():
            for woken in waiters:
                woken.set()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.remove_termination_listener(self._lost)
            await self._connection.close()
            self._connection = None
