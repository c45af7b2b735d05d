"""Request dependencies: the database session (one transaction per request) and the caller."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth import service as auth_service
from customer_master.auth.models import ADMIN_ROLES, WRITER_ROLES, Role
from customer_master.auth.tenancy import Principal
from customer_master.db.session import Database
from customer_master.errors import AuthRequired, Forbidden

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


async def current_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise AuthRequired("Send Authorization: Bearer <token>")
    principal = await auth_service.principal_from_bearer(session, request.app.state.jwt_secret, credentials.credentials)
    request.state.principal = principal
    return principal


def require_role(*roles: Role) -> object:
    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"Role {principal.role} may not do this")
        return principal

    return Depends(check)


AnyRole = Annotated[Principal, Depends(current_principal)]
Writer = Annotated[Principal, require_role(*WRITER_ROLES)]
Admin = Annotated[Principal, require_role(*ADMIN_ROLES)]
