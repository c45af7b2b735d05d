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
