"""Users and API tokens (ADMIN): create users with a role, change the role, disable or enable them;
create an API token (shown once) and revoke it."""

import uuid

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from customer_master.auth import service as auth_service
from customer_master.auth.models import Role, UserStatus
from customer_master.auth.schemas import ApiTokenCreate, UserCreate, UserPatch
from customer_master.deps import SessionDep
from customer_master.errors import AppError, Forbidden
from customer_master.web.core import CsrfChecked, ListPage, WebRoute, errors_of, form_text, redirect, status_of
from customer_master.web.deps import WebAdmin
from customer_master.web.i18n import gettext_for

router = APIRouter(route_class=WebRoute)
ROLES = [role.value for role in Role]
USERS = ListPage("admin/users.html", "users", auth_service.list_users, defaults={"role": "OPS"}, fixed={"roles": ROLES})
TOKENS = ListPage(
    "admin/tokens.html", "tokens", auth_service.list_api_tokens, defaults={"role": "INTEGRATOR"}, fixed={"roles": ROLES}
)


@router.get("/admin/users")
async def users_page(request: Request, session: SessionDep, principal: WebAdmin) -> Response:
    return await USERS.render(request, session, principal)


@router.post("/admin/users", dependencies=[CsrfChecked])
async def create_user(request: Request, session: SessionDep, principal: WebAdmin) -> Response:
    form = await request.form()
    values = {name: form_text(form, name) for name in ("email", "name", "role")}
    try:
        data = UserCreate.model_validate(
            {**values, "name": values["name"] or None, "password": form_text(form, "password")}
        )
        async with session.begin_nested():  # refused (the e-mail is taken): nothing written, the form again
            user = await auth_service.create_user(session, principal.org_id, data)
    except (ValidationError, AppError) as exc:
        return await USERS.render(request, session, principal, status_of(exc), errors_of(exc), values=values)
    _ = gettext_for(request)
    message = _("User %(email)s created with role %(role)s.") % {"email": user.email, "role": user.role}
    return await USERS.render(request, session, principal, message=message)


@router.post("/admin/users/{user_id}", dependencies=[CsrfChecked])
async def update_user(request: Request, user_id: uuid.UUID, session: SessionDep, principal: WebAdmin) -> Response:
    """Role and status; an admin cannot disable or demote themself (and so lock the org out)."""
    form = await request.form()
    changes = {name: form_text(form, name) for name in ("role", "status") if form_text(form, name)}
    _ = gettext_for(request)
    if user_id == principal.user_id and (
        changes.get("status") == UserStatus.DISABLED or changes.get("role", Role.ADMIN) != Role.ADMIN
    ):
        raise Forbidden(_("You cannot disable yourself or take away your own ADMIN role."))
    try:
        patch = UserPatch.model_validate(changes)
    except ValidationError as exc:
        return await USERS.render(request, session, principal, 422, errors_of(exc))
    user = await auth_service.update_user(session, principal.org_id, user_id, patch)
    message = _("%(email)s: role %(role)s, %(status)s.") % {
        "email": user.email,
        "role": user.role,
        "status": _("active") if user.status == UserStatus.ACTIVE else _("disabled"),
    }
    return await USERS.render(request, session, principal, message=message)


@router.get("/admin/tokens")
async def tokens_page(
    request: Request, session: SessionDep, principal: WebAdmin, revoked: str | None = None
) -> Response:
    _ = gettext_for(request)
    return await TOKENS.render(request, session, principal, message=_("The token was revoked.") if revoked else None)


@router.post("/admin/tokens", dependencies=[CsrfChecked])
async def create_token(request: Request, session: SessionDep, principal: WebAdmin) -> Response:
    """The token is in this one response only (not stored, not cacheable)."""
    form = await request.form()
    values = {name: form_text(form, name).strip() for name in ("name", "role")}
    try:
        data = ApiTokenCreate.model_validate(values)
    except ValidationError as exc:
        return await TOKENS.render(request, session, principal, 422, errors_of(exc), values=values)
    row, token = await auth_service.create_api_token(session, principal.org_id, data)
    return await TOKENS.render(request, session, principal, created=row, created_token=token)


@router.post("/admin/tokens/{token_id}/revoke", dependencies=[CsrfChecked])
async def revoke_token(request: Request, token_id: uuid.UUID, session: SessionDep, principal: WebAdmin) -> Response:
    await auth_service.delete_api_token(session, principal.org_id, token_id)
    return redirect(request, "/admin/tokens?revoked=1")
