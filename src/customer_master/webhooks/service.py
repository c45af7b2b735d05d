"""Webhook endpoints of an org (API.md §11 "Push"): the rules; the sending is `delivery.py`'s and `worker.py`'s.

- A new endpoint starts at the feed's current end: it receives what comes after its creation. Creating or
  changing an endpoint sends nothing.
- The URL is checked when it is set (and again on every attempt): https, only to globally routable
  addresses (`addresses.py`). A host that does not resolve now is accepted for https: DNS may be down or
  the receiver not set up yet, and every attempt resolves anew (an attempt that cannot resolve fails and
  is retried). A host that resolves to any address that is not allowed is refused.
- `FAILING` or `DISABLED` → `ACTIVE` resumes at the endpoint's cursor with a fresh retry schedule; so does a
  new URL. A replay moves the cursor back, never forward past events the endpoint has not had.
"""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import OrgId
from customer_master.config import get_settings
from customer_master.db.session import driver_connection
from customer_master.errors import Gone, NotFound, ValidationFailed
from customer_master.history import repository as history_repository
from customer_master.history.service import parse_sequence_cursor
from customer_master.pagination import decode_time_cursor, encode_time_cursor
from customer_master.webhooks import addresses, repository
from customer_master.webhooks.schemas import (
    Delivery,
    ReplayAccepted,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookPatch,
    WebhookSecret,
)
from customer_master.webhooks.signing import new_secret

NO_SUCH_WEBHOOK = "No such webhook"


async def check_url(url: str) -> None:
    """422 (`url`) unless the URL may be sent to, by the rules of `addresses.py`."""
    try:
        target = addresses.parse_url(url)
        await addresses.resolve(target, get_settings().webhook_allow_loopback)
    except addresses.Unresolved as exc:
        if target.scheme != "https":  # http must be seen to lead to loopback
            raise ValidationFailed.one("url", f"{exc}; {addresses.HTTPS_ONLY}") from None
    except addresses.UnsafeUrl as exc:
        raise ValidationFailed.one("url", str(exc)) from None


async def create_webhook(session: AsyncSession, org_id: OrgId, data: WebhookCreate) -> WebhookCreated:
    await check_url(data.url)
    conn = await driver_connection(session)
    secret = new_secret()
    row = await repository.create_endpoint(
        conn,
        org_id,
        url=data.url,
        types=data.types,
        description=data.description,
        secret=secret,
        cursor=await history_repository.feed_end(conn, org_id),
    )
    return WebhookCreated(**dict(row), secret=secret)


async def list_webhooks(session: AsyncSession, org_id: OrgId) -> list[Webhook]:
    rows = await repository.list_endpoints(await driver_connection(session), org_id)
    return [Webhook(**dict(row)) for row in rows]


async def get_webhook(session: AsyncSession, org_id: OrgId, webhook_id: uuid.UUID) -> Webhook:
    row = await repository.get_endpoint(await driver_connection(session), org_id, webhook_id)
    if row is None:
        raise NotFound(NO_SUCH_WEBHOOK)
    return Webhook(**dict(row))


async def update_webhook(session: AsyncSession, org_id: OrgId, webhook_id: uuid.UUID, patch: WebhookPatch) -> Webhook:
    sent = patch.model_fields_set
    conn = await driver_connection(session)
    if await repository.get_endpoint(conn, org_id, webhook_id) is None:
        raise NotFound(NO_SUCH_WEBHOOK)
    if patch.url is not None:
        await check_url(patch.url)
    current = await repository.get_endpoint(conn, org_id, webhook_id, for_update=True)
    if current is None:
        raise NotFound(NO_SUCH_WEBHOOK)
    url = patch.url if patch.url is not None else current["url"]
    types = patch.types if "types" in sent else current["types"]
    status = patch.status or current["status"]
    row = await repository.update_endpoint(
        conn,
        org_id,
        webhook_id,
        url=url,
        types=types,
        description=patch.description if "description" in sent else current["description"],
        status=status,
        new_revision=types != current["types"],
        reset_retries=url != current["url"] or (status == "ACTIVE" and current["status"] != "ACTIVE"),
    )
    if row is None:
        raise NotFound(NO_SUCH_WEBHOOK)
    return Webhook(**dict(row))


async def delete_webhook(session: AsyncSession, org_id: OrgId, webhook_id: uuid.UUID) -> None:
    """The endpoint, its log and whatever it had still to receive are gone."""
    if not await repository.delete_endpoint(await driver_connection(session), org_id, webhook_id):
        raise NotFound(NO_SUCH_WEBHOOK)


async def rotate_secret(session: AsyncSession, org_id: OrgId, webhook_id: uuid.UUID) -> WebhookSecret:
    """A new secret; the one it replaces signs too for `CM_WEBHOOK_SECRET_OVERLAP_S` (a secret replaced
    before then stops signing at once: two secrets sign at most)."""
    secret = new_secret()
    overlap_s = get_settings().webhook_secret_overlap_s
    if not await repository.rotate_secret(await driver_connection(session), org_id, webhook_id, secret, overlap_s):
        raise NotFound(NO_SUCH_WEBHOOK)
    return WebhookSecret(secret=secret)


async def replay(session: AsyncSession, org_id: OrgId, webhook_id: uuid.UUID, after: str) -> ReplayAccepted:
    """Send every event after the cursor again, in order, before new ones (410 when the feed no longer
    keeps what follows the cursor, as `GET /events` answers)."""
    conn = await driver_connection(session)
    if await repository.get_endpoint(conn, org_id, webhook_id) is None:
        raise NotFound(NO_SUCH_WEBHOOK)
    sequence = parse_sequence_cursor(after, "after")
    oldest_kept = await history_repository.feed_start(conn, org_id, get_settings().event_retention_s)
    if sequence < oldest_kept:
        raise Gone(f"Events before sequence {oldest_kept + 1} are no longer kept")
    if sequence > await history_repository.feed_end(conn, org_id):
        raise ValidationFailed.one("after", "not a cursor this API returned (beyond the end of the feed)")
    cursor = await repository.replay(conn, org_id, webhook_id, sequence)
    if cursor is None:
        raise NotFound(NO_SUCH_WEBHOOK)
    return ReplayAccepted(after=str(cursor))


async def delivery_sequence(session: AsyncSession, org_id: OrgId, webhook_id: uuid.UUID, delivery_id: uuid.UUID) -> int:
    """The `sequence` of the event one attempt was for: `replay` from one less sends that event again, then
    every later one (the web UI's "send again from here")."""
    sequence = await repository.delivery_sequence(await driver_connection(session), org_id, webhook_id, delivery_id)
    if sequence is None:
        raise NotFound("No such delivery")
    return sequence


async def list_deliveries(
    session: AsyncSession, org_id: OrgId, webhook_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[Delivery], str | None]:
    """The endpoint's attempts, newest first."""
    conn = await driver_connection(session)
    if await repository.get_endpoint(conn, org_id, webhook_id) is None:
        raise NotFound(NO_SUCH_WEBHOOK)
    before = decode_time_cursor(cursor) if cursor else None
    rows = await repository.deliveries(conn, org_id, webhook_id, before=before, limit=limit + 1)
    items = [Delivery(**dict(row)) for row in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return items, encode_time_cursor(last.created_at, last.id) if last else None
