"""`Idempotency-Key` on creating requests (API.md §1).

Keys are scoped to the org, the method and the exact path. The same key with the same body within
24 h answers the first successful response again; with another body it is a 409. Requests with one
key are serialised by a transaction-scoped advisory lock, so two at once cannot both create.
"""

import hashlib
import json
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import OrgId
from customer_master.errors import Conflict, ValidationFailed

RETENTION = "24 hours"


async def run_idempotent(
    session: AsyncSession,
    org_id: OrgId,
    request: Request,
    key: str | None,
    status_code: int,
    create: Callable[[], Awaitable[bytes]],
) -> Response:
    """Run `create` (which returns the JSON body) once per key; replay its response afterwards."""
    if key is None:
        return Response(await create(), status_code=status_code, media_type="application/json")
    if not 1 <= len(key) <= 255:
        raise ValidationFailed.one("Idempotency-Key", "must be 1 to 255 characters")
    scope = {"org_id": org_id, "method": request.method, "path": request.url.path, "key": key}
    request_hash = hashlib.sha256(
        json.dumps(await request.json(), sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:lock_key, 0))"),
        {"lock_key": f"{org_id}|{request.method}|{request.url.path}|{key}"},
    )
    stored = (
        await session.execute(
            text(
                "SELECT request_hash, status_code, response_body FROM idempotency_key"
                " WHERE org_id = :org_id AND method = :method AND path = :path AND key = :key"
                f" AND created_at > now() - interval '{RETENTION}'"
            ),
            scope,
        )
    ).one_or_none()
    if stored is not None:
        if stored.request_hash != request_hash:
            raise Conflict("This Idempotency-Key was used with another body", "Idempotency-Key", None)
        return JSONResponse(stored.response_body, status_code=stored.status_code)
    body = await create()
    await session.execute(
        text(
            "INSERT INTO idempotency_key (org_id, method, path, key, request_hash, status_code, response_body)"
            " VALUES (:org_id, :method, :path, :key, :request_hash, :status_code, CAST(:body AS jsonb))"
            " ON CONFLICT (org_id, method, path, key) DO UPDATE SET request_hash = EXCLUDED.request_hash,"
            " status_code = EXCLUDED.status_code, response_body = EXCLUDED.response_body, created_at = now()"
        ),
        {**scope, "request_hash": request_hash, "status_code": status_code, "body": body.decode()},
    )
    return Response(body, status_code=status_code, media_type="application/json")
