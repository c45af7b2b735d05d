"""The web UI's request dependencies: the caller behind the session cookie, and the roles.

The API's plumbing (`customer_master.deps`), with the caller taken from the cookie instead of a Bearer
header: one session per request (`SessionDep`, also for the caller's lookup) and the same role rule
(`require_role`). A missing, expired or revoked session is `LoginRequired`, which sends the browser to the
login page; a role that may not is a 403 page.
"""

from typing import Annotated

from fastapi import Depends, Request

from customer_master.auth import security
from customer_master.auth import service as auth_service
from customer_master.auth.models import ADMIN_ROLES, WRITER_ROLES
from customer_master.auth.tenancy import Principal
from customer_master.deps import SessionDep, require_role
from customer_master.errors import AuthRequired, Forbidden
from customer_master.web.core import SESSION_COOKIE, LoginRequired, jwt_secret


async def web_principal(request: Request, session: SessionDep) -> Principal:
    """The caller behind the session cookie (a login JWT, as the API reads it from a Bearer header)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or token.startswith(security.API_TOKEN_PREFIX):  # the cookie only ever holds a login JWT
        raise LoginRequired()
    try:
        principal = await auth_service.principal_from_bearer(session, jwt_secret(request), token)
    except (AuthRequired, Forbidden):  # expired, or the user was disabled meanwhile
        raise LoginRequired() from None
    request.state.principal = principal
    return principal


WebUser = Annotated[Principal, Depends(web_principal)]
WebWriter = Annotated[Principal, require_role(*WRITER_ROLES, caller=web_principal, source="web")]
WebAdmin = Annotated[Principal, require_role(*ADMIN_ROLES, caller=web_principal, source="web")]
