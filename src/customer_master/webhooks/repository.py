"""The SQL of webhooks (migration 0008): endpoints, their place in the feed, and the log of attempts.

Every statement names the org. The worker's statements that move an endpoint's `cursor` hold only where
the cursor and `revision` are still what the worker read (a replay or a change of `types` in between
wins); times are the database's, so that every process judges "due" by one clock.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from customer_master.auth.tenancy import OrgId
from customer_master.history.repository import SEQUENCE, VISIBLE

ENDPOINT_COLUMNS = "id, url, types, description, status, created_at"

INSERT_ENDPOINT = f"""
INSERT INTO webhook_endpoint (org_id, url, types, description, secret, cursor)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING {ENDPOINT_COLUMNS}
"""

LIST_ENDPOINTS = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint WHERE org_id = $1 ORDER BY created_at, id"

GET_ENDPOINT = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint WHERE org_id = $1 AND id = $2"

LOCK_ENDPOINT = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint WHERE org_id = $1 AND id = $2 FOR UPDATE"

# $7: the cursor is read differently from now on (types) → a new revision; $8: start the retry state afresh.
UPDATE_ENDPOINT = f"""
UPDATE webhook_endpoint
   SET url = $3, types = $4, description = $5, status = $6,
       revision = revision + CASE WHEN $7 THEN 1 ELSE 0 END,
       attempts = CASE WHEN $8 THEN 0 ELSE attempts END,
       failing_since = CASE WHEN $8 THEN NULL ELSE failing_since END,
       next_attempt_at = CASE WHEN $8 THEN NULL ELSE next_attempt_at END
 WHERE org_id = $1 AND id = $2
RETURNING {ENDPOINT_COLUMNS}
"""

DELETE_ENDPOINT = "DELETE FROM webhook_endpoint WHERE org_id = $1 AND id = $2 RETURNING id"

ROTATE_SECRET = """
UPDATE webhook_endpoint
   SET previous_secret = secret, previous_secret_expires_at = now() + make_interval(secs => $4), secret = $3
 WHERE org_id = $1 AND id = $2
RETURNING id
"""

# Back to `$3` when that is earlier; never forward past events the endpoint has not had.
REPLAY = """
UPDATE webhook_endpoint AS w
   SET cursor = least(w.cursor, $3),
       revision = w.revision + CASE WHEN w.cursor > $3 THEN 1 ELSE 0 END,
       attempts = CASE WHEN w.cursor > $3 THEN 0 ELSE w.attempts END,
       failing_since = CASE WHEN w.cursor > $3 THEN NULL ELSE w.failing_since END,
       next_attempt_at = CASE WHEN w.cursor > $3 THEN NULL ELSE w.next_attempt_at END
 WHERE w.org_id = $1 AND w.id = $2
RETURNING w.cursor
"""

DELIVERIES = """
SELECT id, event_id, attempt, status_code, error, duration_ms, created_at
  FROM webhook_delivery
 WHERE org_id = $1 AND endpoint_id = $2 AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
 ORDER BY created_at DESC, id DESC
 LIMIT $5
"""

DELIVERY_SEQUENCE = "SELECT sequence FROM webhook_delivery WHERE org_id = $1 AND endpoint_id = $2 AND id = $3"

# --- the worker --------------------------------------------------------------------------------------

# Active endpoints whose org's feed has gone past their cursor and whose next attempt is due. Cheap when
# nothing is pending: the feed positions of the orgs that have endpoints. In random order: every worker
# asks the same question, and with more endpoints due than one worker takes, the others must not all be
# handed the ones it already holds.
DUE_ENDPOINTS = """
SELECT w.org_id, w.id
  FROM webhook_endpoint w
  JOIN change_feed_position p ON p.org_id = w.org_id
 WHERE w.status = 'ACTIVE' AND p.last_sequence > w.cursor
   AND (w.next_attempt_at IS NULL OR w.next_attempt_at <= now())
 ORDER BY random()
 LIMIT $1
"""

# The claim of an endpoint: a session-level advisory lock of the worker's own connection. The two-key form
# with a class of its own never meets the single-bigint keys (the migration lock) or the import lock's class.
CLAIM_LOCK_CLASS = 47_110_011
TRY_CLAIM = "SELECT pg_try_advisory_lock($1, hashtext($2::text))"
RELEASE_CLAIM = "SELECT pg_advisory_unlock($1, hashtext($2::text))"

# What the worker needs of an endpoint to send its next event (also the answer of `RECORD_DELIVERED`).
DELIVERY_COLUMNS = """
org_id, id, url, types, status, cursor, revision, attempts, secret,
CASE WHEN previous_secret_expires_at > now() THEN previous_secret END AS previous_secret,
greatest(extract(epoch FROM next_attempt_at - clock_timestamp()), 0)::float8 AS wait_s
"""

FOR_DELIVERY = f"SELECT {DELIVERY_COLUMNS} FROM webhook_endpoint WHERE org_id = $1 AND id = $2"

# The attempt's record, only while the endpoint exists: a deleted endpoint's attempt in flight leaves no
# trace. $1–$8: org, endpoint, event id, sequence, attempt, status code, error, duration.
_RECORD = """
recorded AS (
  INSERT INTO webhook_delivery (org_id, endpoint_id, event_id, sequence, attempt, status_code, error, duration_ms)
  SELECT $1, $2, $3, $4, $5, $6, $7, $8
   WHERE EXISTS (SELECT 1 FROM webhook_endpoint WHERE org_id = $1 AND id = $2))
"""

# A 2xx: the attempt's record and the cursor moved past the event (`$4`), in one statement (one round trip,
# one commit) — where the cursor and revision are still what the worker read ($9, $10). Answers the
# endpoint as it is now (the next event's URL, secrets, status), no row when something came between.
RECORD_DELIVERED = f"""
WITH {_RECORD},
moved AS (
  UPDATE webhook_endpoint
     SET cursor = $4, attempts = 0, failing_since = NULL, next_attempt_at = NULL
   WHERE org_id = $1 AND id = $2 AND cursor = $9 AND revision = $10
  RETURNING {DELIVERY_COLUMNS})
SELECT * FROM moved
"""

MOVE_CURSOR = """
UPDATE webhook_endpoint
   SET cursor = $5, attempts = 0, failing_since = NULL, next_attempt_at = NULL
 WHERE org_id = $1 AND id = $2 AND cursor = $3 AND revision = $4
"""

# Anything else: the attempt's record and the next attempt scheduled, in one statement. $11: the pause
# before the next attempt; $12: the give-up time, counted from the event's first failure. Answers the
# endpoint's status, no row when something came between.
RECORD_FAILURE = f"""
WITH {_RECORD},
failed AS (
  UPDATE webhook_endpoint
     SET attempts = attempts + 1,
         failing_since = coalesce(failing_since, clock_timestamp()),
         status = CASE WHEN status = 'ACTIVE'
                        AND clock_timestamp() - coalesce(failing_since, clock_timestamp()) >= make_interval(secs => $12)
                       THEN 'FAILING' ELSE status END,
         next_attempt_at = clock_timestamp() + make_interval(secs => $11)
   WHERE org_id = $1 AND id = $2 AND cursor = $9 AND revision = $10
  RETURNING status)
SELECT status FROM failed
"""

# (endpoint, event) pairs not yet delivered to active endpoints, every org: the `types` rule of the feed.
PENDING_EVENTS = f"""
SELECT count(*)
  FROM webhook_endpoint w
  JOIN change_transaction t ON t.org_id = w.org_id AND t.last_sequence > w.cursor
  JOIN change_entry e ON e.org_id = t.org_id AND e.txid = t.txid
 WHERE w.status = 'ACTIVE' AND {SEQUENCE} > w.cursor AND {VISIBLE}
   AND (w.types IS NULL OR e.type = ANY (w.types)
        OR EXISTS (SELECT 1 FROM unnest(w.types) AS p (type)
                    WHERE right(p.type, 2) = '.*' AND starts_with(e.type, left(p.type, -1))))
"""


async def create_endpoint(
    conn: asyncpg.Connection,
    org_id: OrgId,
    *,
    url: str,
    types: list[str] | None,
    description: str | None,
    secret: str,
    cursor: int,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(INSERT_ENDPOINT, org_id, url, types, description, secret, cursor)
    return row


async def list_endpoints(conn: asyncpg.Connection, org_id: OrgId) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(LIST_ENDPOINTS, org_id)
    return rows


async def get_endpoint(
    conn: asyncpg.Connection, org_id: OrgId, endpoint_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(LOCK_ENDPOINT if for_update else GET_ENDPOINT, org_id, endpoint_id)
    return row


async def update_endpoint(
    conn: asyncpg.Connection,
    org_id: OrgId,
    endpoint_id: uuid.UUID,
    *,
    url: str,
    types: list[str] | None,
    description: str | None,
    status: str,
    new_revision: bool,
    reset_retries: bool,
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        UPDATE_ENDPOINT, org_id, endpoint_id, url, types, description, status, new_revision, reset_retries
    )
    return row


async def delete_endpoint(conn: asyncpg.Connection, org_id: OrgId, endpoint_id: uuid.UUID) -> bool:
    return await conn.fetchval(DELETE_ENDPOINT, org_id, endpoint_id) is not None


async def rotate_secret(
    conn: asyncpg.Connection, org_id: OrgId, endpoint_id: uuid.UUID, secret: str, overlap_s: float
) -> bool:
    return await conn.fetchval(ROTATE_SECRET, org_id, endpoint_id, secret, float(overlap_s)) is not None


async def replay(conn: asyncpg.Connection, org_id: OrgId, endpoint_id: uuid.UUID, after: int) -> int | None:
    """The endpoint's cursor after moving it back to `after` (None: no such endpoint)."""
    cursor: int | None = await conn.fetchval(REPLAY, org_id, endpoint_id, after)
    return cursor


async def deliveries(
    conn: asyncpg.Connection,
    org_id: OrgId,
    endpoint_id: uuid.UUID,
    *,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Attempts newest first, older than `before` (a page's last attempt)."""
    created_at, delivery_id = before if before else (None, None)
    rows: list[asyncpg.Record] = await conn.fetch(DELIVERIES, org_id, endpoint_id, created_at, delivery_id, limit)
    return rows


async def delivery_sequence(
    conn: asyncpg.Connection, org_id: OrgId, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> int | None:
    """The feed sequence of the event one attempt was for (None: no such attempt of this endpoint)."""
    sequence: int | None = await conn.fetchval(DELIVERY_SEQUENCE, org_id, endpoint_id, delivery_id)
    return sequence


async def due_endpoints(conn: asyncpg.Connection, limit: int) -> list[tuple[OrgId, uuid.UUID]]:
    rows = await conn.fetch(DUE_ENDPOINTS, limit)
    return [(OrgId(row["org_id"]), row["id"]) for row in rows]


async def try_claim(conn: asyncpg.Connection, endpoint_id: uuid.UUID) -> bool:
    """Claim the endpoint for this session, unless another session holds it (two endpoints whose ids hash
    alike share a claim: they are then delivered one after the other, never wrongly)."""
    return bool(await conn.fetchval(TRY_CLAIM, CLAIM_LOCK_CLASS, str(endpoint_id)))


async def release_claim(conn: asyncpg.Connection, endpoint_id: uuid.UUID) -> None:
    await conn.fetchval(RELEASE_CLAIM, CLAIM_LOCK_CLASS, str(endpoint_id))


async def endpoint_for_delivery(
    conn: asyncpg.Connection, org_id: OrgId, endpoint_id: uuid.UUID
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(FOR_DELIVERY, org_id, endpoint_id)
    return row


@dataclass(frozen=True)
class Attempt:
    """One attempt to send an event, as the deliveries log keeps it."""

    event_id: uuid.UUID
    sequence: int
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int

    def arguments(self, org_id: OrgId, endpoint_id: uuid.UUID) -> tuple[object, ...]:
        return (org_id, endpoint_id, self.event_id, self.sequence, self.attempt, self.status_code, self.error,
                self.duration_ms)  # fmt: skip


async def record_delivered(
    conn: asyncpg.Connection, org_id: OrgId, endpoint_id: uuid.UUID, attempt: Attempt, *, read: tuple[int, int]
) -> asyncpg.Record | None:
    """Record a 2xx and move the cursor past its event where (cursor, revision) is still `read`: the endpoint
    as it is now (`FOR_DELIVERY`'s columns), None when something came between (the attempt is recorded)."""
    cursor, revision = read
    row: asyncpg.Record | None = await conn.fetchrow(
        RECORD_DELIVERED, *attempt.arguments(org_id, endpoint_id), cursor, revision
    )
    return row


async def move_cursor(
    conn: asyncpg.Connection, org_id: OrgId, endpoint_id: uuid.UUID, *, read: tuple[int, int], to: int
) -> bool:
    """Move the cursor to `to` where (cursor, revision) is still `read`; False when something came between."""
    cursor, revision = read
    result: str = await conn.execute(MOVE_CURSOR, org_id, endpoint_id, cursor, revision, to)
    return result == "UPDATE 1"


async def record_failure(
    conn: asyncpg.Connection,
    org_id: OrgId,
    endpoint_id: uuid.UUID,
    attempt: Attempt,
    *,
    read: tuple[int, int],
    pause_s: float,
    give_up_s: float,
) -> str | None:
    """Record a failed attempt and schedule the next one (or give up: FAILING); the endpoint's status, None when
    something came between (the attempt is recorded)."""
    cursor, revision = read
    status: str | None = await conn.fetchval(
        RECORD_FAILURE, *attempt.arguments(org_id, endpoint_id), cursor, revision, float(pause_s), float(give_up_s)
    )
    return status


async def pending_events(conn: asyncpg.Connection) -> int:
    value: int = await conn.fetchval(PENDING_EVENTS)
    return value
