"""`Idempotency-Key` on creating requests (API.md §1).

Keys are scoped to the org, the method and the exact path. The same key with the same body within
24 h answers the first successful response again; with another body it is a 409. Requests with one
key are serialised by a transaction-scoped advisory lock, so two at once cannot both create. The
records and the lock are SQL in `idempotency_repository`; this module is the HTTP side.
"""

import hashlib
import json
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master import idempotency_repository as repository
from customer_master.auth.tenancy import OrgId
from customer_master.errors import Conflict, ValidationFailed

# API.md §1: a key has 1..255 characters (the header's declaration in the OpenAPI document says the same).
KEY_MIN_LENGTH = 1
KEY_MAX_LENGTH = 255
KEY_LENGTH_REASON = f"must be {KEY_MIN_LENGTH} to {KEY_MAX_LENGTH} characters"


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
    if not KEY_MIN_LENGTH <= len(key) <= KEY_MAX_LENGTH:
        raise ValidationFailed.one("Idempotency-Key", KEY_LENGTH_REASON)
    method, path = request.method, request.url.path
    request_hash = hashlib.sha256(
        json.dumps(await request.json(), sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    await repository.lock_key(session, org_id, method, path, key)
    stored = await repository.find_stored_response(session, org_id, method, path, key)
    if stored is not None:
        if stored.request_hash != request_hash:
            raise Conflict("This Idempotency-Key was used with another body", "Idempotency-Key", None)
        return JSONResponse(stored.response_body, status_code=stored.status_code)
    body = await create()
    await repository.store_response(
        session, org_id, method, path, key, request_hash=request_hash, status_code=status_code, body=body
    )
    return Response(body, status_code=status_code, media_type="application/json")
