"""The SQL of `Idempotency-Key` records: one per (org, method, path, key), kept for `RETENTION`."""

from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import OrgId

RETENTION = "24 hours"


class StoredResponse(NamedTuple):
    request_hash: str
    status_code: int
    response_body: Any


async def lock_key(session: AsyncSession, org_id: OrgId, method: str, path: str, key: str) -> None:
    """Wait for, then hold until the transaction ends, the advisory lock of this key: requests with one key
    run one after another, so two at once cannot both create."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:lock_key, 0))"),
        {"lock_key": f"{org_id}|{method}|{path}|{key}"},
    )


async def find_stored_response(
    session: AsyncSession, org_id: OrgId, method: str, path: str, key: str
) -> StoredResponse | None:
    """The response first given to this key, unless it is older than `RETENTION`."""
    row = (
        await session.execute(
            text(
                "SELECT request_hash, status_code, response_body FROM idempotency_key"
                " WHERE org_id = :org_id AND method = :method AND path = :path AND key = :key"
                f" AND created_at > now() - interval '{RETENTION}'"
            ),
            {"org_id": org_id, "method": method, "path": path, "key": key},
        )
    ).one_or_none()
    return StoredResponse(row.request_hash, row.status_code, row.response_body) if row is not None else None


async def store_response(
    session: AsyncSession,
    org_id: OrgId,
    method: str,
    path: str,
    key: str,
    *,
    request_hash: str,
    status_code: int,
    body: bytes,
) -> None:
    """Keep the response for this key; an expired record of the same key is overwritten and starts anew."""
    await session.execute(
        text(
            "INSERT INTO idempotency_key (org_id, method, path, key, request_hash, status_code, response_body)"
            " VALUES (:org_id, :method, :path, :key, :request_hash, :status_code, CAST(:body AS jsonb))"
            " ON CONFLICT (org_id, method, path, key) DO UPDATE SET request_hash = EXCLUDED.request_hash,"
            " status_code = EXCLUDED.status_code, response_body = EXCLUDED.response_body, created_at = now()"
        ),
        {
            "org_id": org_id,
            "method": method,
            "path": path,
            "key": key,
            "request_hash": request_hash,
            "status_code": status_code,
            "body": body.decode(),
        },
    )
