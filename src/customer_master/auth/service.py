"""Orgs, users, API tokens and login. Functions that act inside an org take its `OrgId`."""

import math
import re
import uuid
from typing import Any

from anyio import to_thread
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth import security
from customer_master.auth.models import ApiToken, Org, Role, User, UserStatus
from customer_master.auth.schemas import ApiTokenCreate, UserCreate, UserPatch
from customer_master.auth.tenancy import OrgId, Principal
from customer_master.db.session import Database, driver_connection
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
    org = await session.scalar(
        insert(Org)
        .values(slug=slug, name=name.strip(), settings_json={})
        .on_conflict_do_nothing(index_elements=["slug"])
        .returning(Org)
    )
    if org is None:
        existing = await session.scalar(select(Org.id).where(Org.slug == slug))
        raise Conflict(f"An org with slug {slug!r} exists already", "slug", existing)
    return org


async def org_id_by_slug(session: AsyncSession, slug: str) -> OrgId:
    """For the CLI, whose operator names the org by slug."""
    org_id = await session.scalar(select(Org.id).where(Org.slug == slug))
    if org_id is None:
        raise NotFound(f"No org with slug {slug!r}")
    return OrgId(org_id)


# --- users ------------------------------------------------------------------------------------


async def create_user(session: AsyncSession, org_id: OrgId, data: UserCreate) -> User:
    password_hash = await to_thread.run_sync(security.hash_password, data.password)
    user = await session.scalar(
        insert(User)
        .values(
            org_id=org_id,
            email=data.email,
            name=data.name or None,
            role=data.role,
            password_hash=password_hash,
            status=UserStatus.ACTIVE,
        )
        .on_conflict_do_nothing(index_elements=["org_id", "email"])
        .returning(User)
    )
    if user is None:
        existing = await session.scalar(select(User.id).where(User.org_id == org_id, User.email == data.email))
        raise Conflict(f"A user with e-mail {data.email} exists already", "email", existing)
    return user


async def list_users(session: AsyncSession, org_id: OrgId) -> list[User]:
    result = await session.scalars(select(User).where(User.org_id == org_id).order_by(User.email))
    return list(result)


async def update_user(session: AsyncSession, org_id: OrgId, user_id: uuid.UUID, patch: UserPatch) -> User:
    user = await session.scalar(select(User).where(User.org_id == org_id, User.id == user_id).with_for_update())
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
    await session.flush()
    await session.refresh(user)
    return user


# --- API tokens -------------------------------------------------------------------------------


async def create_api_token(session: AsyncSession, org_id: OrgId, data: ApiTokenCreate) -> tuple[ApiToken, str]:
    """The token itself is returned once, here; only its hash is stored."""
    token = security.generate_api_token()
    row = await session.scalar(
        insert(ApiToken)
        .values(org_id=org_id, name=data.name, role=data.role, token_hash=security.hash_api_token(token))
        .returning(ApiToken)
    )
    assert row is not None
    return row, token


async def list_api_tokens(session: AsyncSession, org_id: OrgId) -> list[ApiToken]:
    result = await session.scalars(
        select(ApiToken).where(ApiToken.org_id == org_id).order_by(ApiToken.created_at, ApiToken.id)
    )
    return list(result)


async def delete_api_token(session: AsyncSession, org_id: OrgId, token_id: uuid.UUID) -> None:
    deleted = await session.scalar(
        delete(ApiToken).where(ApiToken.org_id == org_id, ApiToken.id == token_id).returning(ApiToken.id)
    )
    if deleted is None:
        raise NotFound("No such API token")


# --- login and the caller of a request --------------------------------------------------------


async def login(db: Database, jwt_secret: str, ttl_s: int, org_slug: str, email: str, password: str) -> str:
    """A login token for the right org, e-mail and password; throttled per account.

    Runs its own transactions: a failed attempt must be recorded although the request fails.
    """
    account_key = f"{org_slug.strip().lower()}:{email.strip().lower()}"
    async with db.transaction() as session:
        count, oldest, now = (
            await session.execute(
                text(
                    "SELECT count(*), min(failed_at), now() FROM login_failure "
                    "WHERE account_key = :key AND failed_at > now() - make_interval(secs => :window)"
                ),
                {"key": account_key, "window": LOGIN_FAILURE_WINDOW_S},
            )
        ).one()
        if count >= LOGIN_FAILURE_LIMIT:
            retry_after = (oldest - now).total_seconds() + LOGIN_FAILURE_WINDOW_S
            raise RateLimited(max(1, math.ceil(retry_after)))
        user = await session.scalar(
            select(User)
            .join(Org, Org.id == User.org_id)
            .where(Org.slug == org_slug.strip(), User.email == email.strip())
        )

    password_ok = await to_thread.run_sync(
        security.verify_password, user.password_hash if user else _DUMMY_HASH, password
    )
    async with db.transaction() as session:
        if user is None or not password_ok:
            await session.execute(
                text(
                    "DELETE FROM login_failure WHERE account_key = :key "
                    "AND failed_at < now() - make_interval(secs => :window)"
                ),
                {"key": account_key, "window": LOGIN_FAILURE_WINDOW_S},
            )
            await session.execute(text("INSERT INTO login_failure (account_key) VALUES (:key)"), {"key": account_key})
        elif user.status != UserStatus.ACTIVE:
            raise Forbidden("This user is disabled")
        else:
            await session.execute(text("DELETE FROM login_failure WHERE account_key = :key"), {"key": account_key})
            await session.execute(update(User).where(User.id == user.id).values(last_login_at=func.now()))
    if user is None or not password_ok:
        raise AuthRequired(WRONG_LOGIN)
    return security.issue_jwt(jwt_secret, user.id, user.org_id, ttl_s)


# The caller of every request: one statement each, sent straight to the driver (see `driver_connection`).
PRINCIPAL_FROM_USER = """
SELECT u.email::text AS user_email, u.name AS user_name, u.role, u.status, o.slug, o.name AS org_name
  FROM app_user u JOIN org o ON o.id = u.org_id
 WHERE u.id = $1 AND o.id = $2
"""
# Looks the token up and records its use (at most once a minute, so a busy integration does not write
# on every request) in one round trip.
PRINCIPAL_FROM_API_TOKEN = """
WITH token AS (
  SELECT t.id, t.name, t.role, t.last_used_at, o.id AS org_id, o.slug, o.name AS org_name
    FROM api_token t JOIN org o ON o.id = t.org_id
   WHERE t.token_hash = $1
), touched AS (
  UPDATE api_token SET last_used_at = now()
   WHERE id = (SELECT id FROM token)
     AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
)
SELECT id, name, role, org_id, slug, org_name FROM token
"""


async def principal_from_bearer(session: AsyncSession, jwt_secret: str, token: str) -> Principal:
    """The caller behind a login token or an API token; 401 for an unknown one, 403 when disabled."""
    if token.startswith(security.API_TOKEN_PREFIX):
        return await _principal_from_api_token(session, token)
    claims = security.decode_jwt(jwt_secret, token)
    if claims is None:
        raise AuthRequired("Invalid or expired token")
    user_id, org_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["org"])
    conn = await driver_connection(session)
    row = await conn.fetchrow(PRINCIPAL_FROM_USER, user_id, org_id)
    if row is None:
        raise AuthRequired("Invalid or expired token")
    if row["status"] != UserStatus.ACTIVE:
        raise Forbidden("This user is disabled")
    return Principal(
        org_id=OrgId(org_id),
        org_slug=row["slug"],
        org_name=row["org_name"],
        role=Role(row["role"]),
        user_id=user_id,
        user_email=row["user_email"],
        user_name=row["user_name"],
    )


async def _principal_from_api_token(session: AsyncSession, token: str) -> Principal:
    conn = await driver_connection(session)
    row = await conn.fetchrow(PRINCIPAL_FROM_API_TOKEN, security.hash_api_token(token))
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
