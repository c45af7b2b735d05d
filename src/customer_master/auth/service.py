"""Orgs, users, API tokens and login: the rules. Functions that act inside an org take its `OrgId`;
the SQL is in `repository`."""

import math
import re
import uuid
from typing import Any

from anyio import to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth import repository, security
from customer_master.auth.models import ApiToken, Org, Role, User, UserStatus
from customer_master.auth.schemas import ApiTokenCreate, UserCreate, UserPatch
from customer_master.auth.tenancy import OrgId, Principal
from customer_master.db.session import Database, Reads
from customer_master.errors import AuthRequired, Conflict, Forbidden, NotFound, RateLimited, ValidationFailed

SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
LOGIN_FAILURE_LIMIT = 10
LOGIN_FAILURE_WINDOW_S = 15 * 60
WRONG_LOGIN = "Wrong organisation, e-mail or password"
# Verified when the account does not exist, so a wrong e-mail costs as long as a wrong password.
_DUMMY_HASH = security.hash_password("not-a-real-password")


# --- orgs -------------------------------------------------------------------------------------


async def create_org(session: AsyncSession, slug: str, name: str) -> Org:
    if not SLUG_PATTERN.fullmatch(slug):
        raise ValidationFailed.one("slug", "1 to 63 lower-case letters, digits and '-', starting alphanumeric")
    if not name.strip():
        raise ValidationFailed.one("name", "must not be empty")
    org = await repository.insert_org(session, slug, name.strip())
    if org is None:
        existing = await repository.org_id_by_slug(session, slug)
        raise Conflict(f"An org with slug {slug!r} exists already", "slug", existing)
    return org


async def org_id_by_slug(session: AsyncSession, slug: str) -> OrgId:
    """For the CLI, whose operator names the org by slug."""
    org_id = await repository.org_id_by_slug(session, slug)
    if org_id is None:
        raise NotFound(f"No org with slug {slug!r}")
    return OrgId(org_id)


# --- users ------------------------------------------------------------------------------------


async def create_user(session: AsyncSession, org_id: OrgId, data: UserCreate) -> User:
    password_hash = await to_thread.run_sync(security.hash_password, data.password)
    user = await repository.insert_user(
        session, org_id, email=data.email, name=data.name or None, role=data.role, password_hash=password_hash
    )
    if user is None:
        existing = await repository.user_id_by_email(session, org_id, data.email)
        raise Conflict(f"A user with e-mail {data.email} exists already", "email", existing)
    return user


async def list_users(session: AsyncSession, org_id: OrgId) -> list[User]:
    return await repository.list_users(session, org_id)


async def update_user(session: AsyncSession, org_id: OrgId, user_id: uuid.UUID, patch: UserPatch) -> User:
    user = await repository.lock_user(session, org_id, user_id)
    if user is None:
        raise NotFound("No such user")
    errors = [
        {"field": field, "reason": "cannot be null"}
        for field in ("role", "status", "password")
        if field in patch.model_fields_set and getattr(patch, field) is None
    ]
    if errors:
        raise ValidationFailed(errors)
    if "name" in patch.model_fields_set:
        user.name = patch.name or None
    if patch.role is not None:
        user.role = patch.role
    if patch.status is not None:
        user.status = patch.status
    if patch.password is not None:
        user.password_hash = await to_thread.run_sync(security.hash_password, patch.password)
    return await repository.save_user(session, user)


# --- API tokens -------------------------------------------------------------------------------


async def create_api_token(session: AsyncSession, org_id: OrgId, data: ApiTokenCreate) -> tuple[ApiToken, str]:
    """The token itself is returned once, here; only its hash is stored."""
    token = security.generate_api_token()
    row = await repository.insert_api_token(
        session, org_id, name=data.name, role=data.role, token_hash=security.hash_api_token(token)
    )
    return row, token


async def list_api_tokens(session: AsyncSession, org_id: OrgId) -> list[ApiToken]:
    return await repository.list_api_tokens(session, org_id)


async def delete_api_token(session: AsyncSession, org_id: OrgId, token_id: uuid.UUID) -> None:
    if not await repository.delete_api_token(session, org_id, token_id):
        raise NotFound("No such API token")


# --- login and the caller of a request --------------------------------------------------------


async def login(db: Database, jwt_secret: str, ttl_s: int, org_slug: str, email: str, password: str) -> str:
    """A login token for the right org, e-mail and password; throttled per account.

    Runs its own transactions: a failed attempt must be recorded although the request fails.
    """
    account_key = f"{org_slug.strip().lower()}:{email.strip().lower()}"
    async with db.transaction() as session:
        count, oldest, now = await repository.recent_login_failures(session, account_key, LOGIN_FAILURE_WINDOW_S)
        if count >= LOGIN_FAILURE_LIMIT:
            assert oldest is not None
            retry_after = (oldest - now).total_seconds() + LOGIN_FAILURE_WINDOW_S
            raise RateLimited(max(1, math.ceil(retry_after)))
        user = await repository.user_for_login(session, org_slug.strip(), email.strip())

    password_ok = await to_thread.run_sync(
        security.verify_password, user.password_hash if user else _DUMMY_HASH, password
    )
    async with db.transaction() as session:
        if user is None or not password_ok:
            await repository.record_login_failure(session, account_key, LOGIN_FAILURE_WINDOW_S)
        elif user.status != UserStatus.ACTIVE:
            raise Forbidden("This user is disabled")
        else:
            await repository.forget_login_failures(session, account_key)
            await repository.set_last_login(session, OrgId(user.org_id), user.id)
    if user is None or not password_ok:
        raise AuthRequired(WRONG_LOGIN)
    return security.issue_jwt(jwt_secret, user.id, user.org_id, ttl_s)


async def principal_from_bearer(reads: Reads, jwt_secret: str, token: str) -> Principal:
    """The caller behind a login token or an API token; 401 for an unknown one, 403 when disabled."""
    if token.startswith(security.API_TOKEN_PREFIX):
        return await _principal_from_api_token(reads, token)
    claims = security.decode_jwt(jwt_secret, token)
    if claims is None:
        raise AuthRequired("Invalid or expired token")
    user_id, org_id = uuid.UUID(claims["sub"]), OrgId(uuid.UUID(claims["org"]))
    row = await repository.principal_of_user(reads, org_id, user_id)
    if row is None:
        raise AuthRequired("Invalid or expired token")
    if row["status"] != UserStatus.ACTIVE:
        raise Forbidden("This user is disabled")
    return Principal(
        org_id=org_id,
        org_slug=row["slug"],
        org_name=row["org_name"],
        role=Role(row["role"]),
        user_id=user_id,
        user_email=row["user_email"],
        user_name=row["user_name"],
    )


async def _principal_from_api_token(reads: Reads, token: str) -> Principal:
    row = await repository.principal_of_api_token(reads, security.hash_api_token(token))
    if row is None:
        raise AuthRequired("Invalid or revoked API token")
    return Principal(
        org_id=OrgId(uuid.UUID(bytes=row["org_id"].bytes)),
        org_slug=row["slug"],
        org_name=row["org_name"],
        role=Role(row["role"]),
        token_id=uuid.UUID(bytes=row["id"].bytes),
        token_name=row["name"],
    )


def me(principal: Principal) -> dict[str, Any]:
    org = {"id": principal.org_id, "slug": principal.org_slug, "name": principal.org_name}
    if principal.user_id is None:
        return {
            "user": None,
            "token": {"id": principal.token_id, "name": principal.token_name, "role": principal.role},
            "org": org,
        }
    user = {
        "id": principal.user_id,
        "email": principal.user_email,
        "name": principal.user_name,
        "role": principal.role,
        "org_id": principal.org_id,
    }
    return {"user": user, "org": org}
