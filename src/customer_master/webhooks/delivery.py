"""The delivery rules of one claimed endpoint (API.md §11): in feed order, one event at a time, at least once.

The caller (the worker) holds the endpoint's claim. Each step is a short transaction of its own; none is
open while the receiver is called. The cursor moves past an event only after a 2xx, and only where no
replay (or change of `types`) came in between. A failed attempt schedules the next one after the pauses
of `CM_WEBHOOK_RETRY_S` (the last repeating) until `CM_WEBHOOK_GIVE_UP_S` have passed since the event's
first failure; then the endpoint is `FAILING` and waits for an admin (nothing is lost: the cursor stays).
"""

import logging
import uuid

import httpx

from customer_master.auth.tenancy import OrgId
from customer_master.config import get_settings
from customer_master.db.session import Database, driver_connection
from customer_master.history.service import events_after
from customer_master.metrics import WEBHOOK_DELIVERIES
from customer_master.webhooks import repository, sender

log = logging.getLogger(__name__)


def pause_after(failed_attempts: int, pauses: tuple[float, ...]) -> float:
    """The pause after the `failed_attempts`-th failure of an event (1-based); the last pause repeats."""
    return pauses[min(failed_attempts, len(pauses)) - 1]


async def deliver_pending(
    database: Database, client: httpx.AsyncClient, org_id: OrgId, endpoint_id: uuid.UUID
) -> float | None:
    """Send the endpoint's pending events in order until none is left or an attempt fails.

    Returns the seconds until the endpoint's next attempt is due, or None when nothing is scheduled.
    """
    while True:
        async with database.transaction() as session:
            conn = await driver_connection(session)
            endpoint = await repository.endpoint_for_delivery(conn, org_id, endpoint_id)
            if endpoint is None or endpoint["status"] != "ACTIVE":
                return None
            if endpoint["wait_s"]:
                return float(endpoint["wait_s"])
            read = (endpoint["cursor"], endpoint["revision"])
            events, end = await events_after(conn, org_id, endpoint["cursor"], endpoint["types"], limit=1)
            if not events:  # nothing (of its types) after the cursor: the endpoint has had the feed up to its end
                if end > endpoint["cursor"]:
                    await repository.move_cursor(conn, org_id, endpoint_id, read=read, to=end)
                return None
        event = events[0]
        settings = get_settings()
        valid_secrets = [endpoint["secret"]] + ([endpoint["previous_secret"]] if endpoint["previous_secret"] else [])
        outcome = await sender.send(
            client,
            endpoint["url"],
            allow_loopback=settings.webhook_allow_loopback,
            message_id=str(event.id),
            body=event.model_dump_json().encode(),
            secrets=valid_secrets,
        )
        WEBHOOK_DELIVERIES.labels("delivered" if outcome.delivered else "failed").inc()
        async with database.transaction() as session:
            conn = await driver_connection(session)
            await repository.record_attempt(
                conn,
                org_id,
                endpoint_id,
                event_id=event.id,
                sequence=event.sequence,
                attempt=endpoint["attempts"] + 1,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
            if outcome.delivered:
                await repository.move_cursor(conn, org_id, endpoint_id, read=read, to=event.sequence)
                continue
            pause = pause_after(endpoint["attempts"] + 1, settings.webhook_retry_s)
            status = await repository.record_failure(
                conn, org_id, endpoint_id, read=read, pause_s=pause, give_up_s=settings.webhook_give_up_s
            )
        if status is None:  # a replay came in meanwhile: go on from where it put the cursor
            continue
        if status == "FAILING":
            log.warning("webhook endpoint %s gave up on event %s: FAILING until resumed", endpoint_id, event.id)
            return None
        return pause
