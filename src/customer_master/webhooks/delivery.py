"""The delivery rules of one claimed endpoint (API.md §11): in feed order, one event at a time, at least once.

The caller (the worker) holds the endpoint's claim. Each step is one short statement on a connection of the
worker's pool, committed by itself; none is open while the receiver is called. The events after the
endpoint's cursor are read `BATCH` at a time and sent one after the other, each only once the one before it
was delivered. A 2xx is recorded and moves the cursor past its event in one statement, which answers the
endpoint as it is now (URL, secrets, status for the next event) — and only where no replay (or change of
`types`) came in between: then the endpoint is read again and the rest of the batch dropped. A failed attempt
is recorded and schedules the next one after the pauses of `CM_WEBHOOK_RETRY_S` (the last repeating) until
`CM_WEBHOOK_GIVE_UP_S` have passed since the event's first failure; then the endpoint is `FAILING` and waits
for an admin (nothing is lost: the cursor stays). A crash between sending and recording sends that one event
again.
"""

import logging
import uuid

import asyncpg

from customer_master.auth.tenancy import OrgId
from customer_master.config import get_settings
from customer_master.history.service import events_after
from customer_master.metrics import WEBHOOK_DELIVERIES
from customer_master.webhooks import repository, sender

log = logging.getLogger(__name__)

BATCH = 100  # events read at once after the cursor (then sent one at a time)


def pause_after(failed_attempts: int, pauses: tuple[float, ...]) -> float:
    """The pause after the `failed_attempts`-th failure of an event (1-based); the last pause repeats."""
    return pauses[min(failed_attempts, len(pauses)) - 1]


async def deliver_pending(
    pool: asyncpg.Pool, channel: sender.Channel, org_id: OrgId, endpoint_id: uuid.UUID
) -> float | None:
    """Send the endpoint's pending events in order until none is left or an attempt fails.

    Returns the seconds until the endpoint's next attempt is due, or None when nothing is scheduled.
    """
    endpoint: asyncpg.Record | None = None
    while True:
        if endpoint is None:
            async with pool.acquire() as conn:
                endpoint = await repository.endpoint_for_delivery(conn, org_id, endpoint_id)
        if endpoint is None or endpoint["status"] != "ACTIVE":
            return None
        if endpoint["wait_s"]:
            return float(endpoint["wait_s"])
        async with pool.acquire() as conn:
            events, end = await events_after(conn, org_id, endpoint["cursor"], endpoint["types"], limit=BATCH)
            if not events:  # nothing (of its types) after the cursor: the endpoint has had the feed up to its end
                if end > endpoint["cursor"]:
                    read = (endpoint["cursor"], endpoint["revision"])
                    await repository.move_cursor(conn, org_id, endpoint_id, read=read, to=end)
                return None
        for event in events:
            # `endpoint` is as the last statement left it: the cursor is the event before this one.
            if endpoint["status"] != "ACTIVE":
                return None
            read = (endpoint["cursor"], endpoint["revision"])
            settings = get_settings()
            secrets = [endpoint["secret"]] + ([endpoint["previous_secret"]] if endpoint["previous_secret"] else [])
            outcome = await sender.send(
                channel,
                endpoint["url"],
                allow_loopback=settings.webhook_allow_loopback,
                message_id=str(event.id),
                body=event.model_dump_json().encode(),
                secrets=secrets,
            )
            WEBHOOK_DELIVERIES.labels("delivered" if outcome.delivered else "failed").inc()
            number = endpoint["attempts"] + 1
            attempt = repository.Attempt(
                event.id, event.sequence, number, outcome.status_code, outcome.error, outcome.duration_ms
            )
            pause = pause_after(attempt.attempt, settings.webhook_retry_s)
            try:
                async with pool.acquire() as conn:
                    if outcome.delivered:
                        endpoint = await repository.record_delivered(conn, org_id, endpoint_id, attempt, read=read)
                    else:
                        status = await repository.record_failure(
                            conn, org_id, endpoint_id, attempt, read=read, pause_s=pause,
                            give_up_s=settings.webhook_give_up_s,
                        )  # fmt: skip
            except asyncpg.ForeignKeyViolationError:  # deleted while its attempt was in flight: no trace left
                return None
            if outcome.delivered:
                if endpoint is None:  # a replay (or new types) came in meanwhile: go on from where it put the cursor
                    break
                continue
            if status is None:  # a replay came in meanwhile: go on from where it put the cursor
                endpoint = None
                break
            if status == "FAILING":
                log.warning("webhook endpoint %s gave up on event %s: FAILING until resumed", endpoint_id, event.id)
                return None
            return pause
