"""Request dependencies: the database session (one transaction per request), the caller and the role rule,
and for routes that only read, a read connection with the caller (`Reader`).

The web UI uses the same session and role rule (`web/deps.py`); only its caller comes from a cookie.
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth import service as auth_service
from customer_master.auth.models import ADMIN_ROLES, WRITER_ROLES, Role
from customer_master.auth.tenancy import Principal
from customer_master.db.session import Database
from customer_master.errors import AuthRequired, Forbidden
from customer_master.history.context import Actor, Source, record_changes_as

_bearer = HTTPBearer(auto_error=False, description="A login token (JWT) or an org API token")


async def get_database(request: Request) -> Database:
    # async: FastAPI runs a plain `def` dependency in a worker thread, a thread hop on every request.
    database: Database = request.app.state.db
    return database


async def get_session(database: Annotated[Database, Depends(get_database)]) -> AsyncIterator[AsyncSession]:
    async with database.transaction() as session:
        yield session


# scope="function": commit before the response is sent, so a 2xx means the change is durable and
# visible to the client's next request, and a failed commit becomes an error response, not a lost 2xx.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
# For what runs its own transactions (the login records a failed attempt although the request fails) or
# outlives the request's (a streamed export).
DatabaseDep = Annotated[Database, Depends(get_database)]


# Where FastAPI keeps the exit stack of the function-scoped dependencies while a route's handler runs.
_FUNCTION_STACK = "fastapi_function_astack"


async def run_in_function_scope(
    handler: Callable[[Request], Coroutine[Any, Any, Response]], request: Request
) -> Response:
    """A route's handler, with its function-scoped dependencies (`SessionDep`) ended before it returns.

    For a route class that turns errors into responses itself (the web UI's pages): FastAPI ends these
    dependencies after the route's handler, so the request's transaction would commit what was written
    before an error the handler answered, and an error of the commit would miss the handler. Ended here,
    the error rolls the transaction back on its way out, as an error of the API does.
    """
    outer = request.scope.get(_FUNCTION_STACK)
    if not isinstance(outer, AsyncExitStack):  # FastAPI has changed: fail loudly rather than commit a failure
        raise RuntimeError(f"FastAPI no longer keeps the function-scoped dependencies in {_FUNCTION_STACK}")
    async with AsyncExitStack() as stack:
        request.scope[_FUNCTION_STACK] = stack
        try:
            return await handler(request)
        finally:
            request.scope[_FUNCTION_STACK] = outer


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _caller(
    request: Request, connection: asyncpg.Connection, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    if credentials is None:
        raise AuthRequired("Send Authorization: Bearer <token>")
    principal = await auth_service.principal_from_bearer(
        connection, request.app.state.jwt_secret, credentials.credentials
    )
    request.state.principal = principal
    return principal


async def current_principal(request: Request, credentials: Credentials) -> Principal:
    """The caller, looked up on a read connection of its own (before, and outside, the request's transaction)."""
    database: Database = request.app.state.db  # not `DatabaseDep`: each dependency level costs every request
    async with database.read() as connection:
        return await _caller(request, connection, credentials)


@dataclass(frozen=True)
class Reading:
    """What a route that only reads is given: the caller, and a read connection (no ORM session, no
    transaction around it; the caller was looked up on it)."""

    principal: Principal
    connection: asyncpg.Connection


async def reading(request: Request, credentials: Credentials) -> AsyncIterator[Reading]:
    database: Database = request.app.state.db
    async with database.read() as connection:
        yield Reading(await _caller(request, connection, credentials), connection)


# One dependency for both, as each dependency level costs every read.
Reader = Annotated[Reading, Depends(reading, scope="function")]


def require_role(
    *roles: Role, caller: Callable[..., Awaitable[Principal]] = current_principal, source: Source = "api"
) -> Any:
    """A dependency: the caller, when their role is one of `roles`; else 403.

    The one role rule of the API and the web UI; the web passes its own `caller` (from the session cookie).
    A caller who may write is named, with `source` and the request id, for the history of what the
    request's transaction changes (API.md §10).
    """

    async def check(
        request: Request, session: SessionDep, principal: Annotated[Principal, Depends(caller)]
    ) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"Role {principal.role} may not do this")
        await record_changes_as(session, Actor.of(principal), source, request_id=request.state.request_id)
        return principal

    return Depends(check)


AnyRole = Annotated[Principal, Depends(current_principal)]
Writer = Annotated[Principal, require_role(*WRITER_ROLES)]
Admin = Annotated[Principal, require_role(*ADMIN_ROLES)]
