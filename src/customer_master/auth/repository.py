"""The SQL of orgs, users, API tokens, login failures and the caller of a request.

Every function that reads or writes an org's users or tokens takes its `OrgId` and filters by it. The
exceptions find the org in the first place: creating one, looking one up by slug (the CLI, login), the
login failures (kept per org slug and e-mail as typed, before any org is known), and an API token, whose
hash names its org.
"""

import uuid
from datetime import datetime

import asyncpg
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.models import ApiToken, Org, User, UserStatus
from customer_master.auth.tenancy import OrgId
from customer_master.db.session import Reads, reading_connection

# --- orgs -------------------------------------------------------------------------------------


async def insert_org(session: AsyncSession, slug: str, name: str) -> Org | None:
    """The new org, or None when its slug is taken."""
    org: Org | None = await session.scalar(
        insert(Org)
        .values(slug=slug, name=name, settings_json={})
        .on_conflict_do_nothing(index_elements=["slug"])
        .returning(Org)
    )
    return org


async def org_id_by_slug(session: AsyncSession, slug: str) -> uuid.UUID | None:
    """Not scoped to an org: this is how an operator's or a login's slug becomes one."""
    org_id: uuid.UUID | None = await session.scalar(select(Org.id).where(Org.slug == slug))
    return org_id


# --- users ------------------------------------------------------------------------------------


async def insert_user(
    session: AsyncSession, org_id: OrgId, *, email: str, name: str | None, role: str, password_hash: str
) -> User | None:
    """The new, active user, or None when the org has a user with this e-mail."""
    user: User | None = await session.scalar(
        insert(User)
        .values(
            org_id=org_id,
            email=email,
            name=name,
            role=role,
            password_hash=password_hash,
            status=UserStatus.ACTIVE,
        )
        .on_conflict_do_nothing(index_elements=["org_id", "email"])
        .returning(User)
    )
    return user


async def user_id_by_email(session: AsyncSession, org_id: OrgId, email: str) -> uuid.UUID | None:
    user_id: uuid.UUID | None = await session.scalar(select(User.id).where(User.org_id == org_id, User.email == email))
    return user_id


async def list_users(session: AsyncSession, org_id: OrgId) -> list[User]:
    result = await session.scalars(select(User).where(User.org_id == org_id).order_by(User.email))
    return list(result)


async def lock_user(session: AsyncSession, org_id: OrgId, user_id: uuid.UUID) -> User | None:
    """The user, locked until the transaction ends, so that two changes to it apply one after the other."""
    user: User | None = await session.scalar(
        select(User).where(User.org_id == org_id, User.id == user_id).with_for_update()
    )
    return user


async def save_user(session: AsyncSession, user: User) -> User:
    """Write the user's changed fields, and read back what the database set (`updated_at`)."""
    await session.flush()
    await session.refresh(user)
    return user


# --- API tokens -------------------------------------------------------------------------------


async def insert_api_token(session: AsyncSession, org_id: OrgId, *, name: str, role: str, token_hash: str) -> ApiToken:
    row = await session.scalar(
        insert(ApiToken).values(org_id=org_id, name=name, role=role, token_hash=token_hash).returning(ApiToken)
    )
    assert row is not None
    return row


async def list_api_tokens(session: AsyncSession, org_id: OrgId) -> list[ApiToken]:
    result = await session.scalars(
        select(ApiToken).where(ApiToken.org_id == org_id).order_by(ApiToken.created_at, ApiToken.id)
    )
    return list(result)


async def delete_api_token(session: AsyncSession, org_id: OrgId, token_id: uuid.UUID) -> bool:
    """True when the org had this token."""
    deleted = await session.scalar(
        delete(ApiToken).where(ApiToken.org_id == org_id, ApiToken.id == token_id).returning(ApiToken.id)
    )
    return deleted is not None


# --- login ------------------------------------------------------------------------------------


async def recent_login_failures(
    session: AsyncSession, account_key: str, window_s: int
) -> tuple[int, datetime | None, datetime]:
    """How many attempts at this account failed within the window, when the oldest of them did, and now."""
    count, oldest, now = (
        await session.execute(
            text(
                "SELECT count(*), min(failed_at), now() FROM login_failure "
                "WHERE account_key = :key AND failed_at > now() - make_interval(secs => :window)"
            ),
            {"key": account_key, "window": window_s},
        )
    ).one()
    return count, oldest, now


async def user_for_login(session: AsyncSession, org_slug: str, email: str) -> User | None:
    """The user with this e-mail in the org with this slug: the org is what the login names."""
    user: User | None = await session.scalar(
        select(User).join(Org, Org.id == User.org_id).where(Org.slug == org_slug, User.email == email)
    )
    return user


async def record_login_failure(session: AsyncSession, account_key: str, window_s: int) -> None:
    """Record a failed attempt, and forget this account's failures that have left the window."""
    await session.execute(
        text(
            "DELETE FROM login_failure WHERE account_key = :key AND failed_at < now() - make_interval(secs => :window)"
        ),
        {"key": account_key, "window": window_s},
    )
    await session.execute(text("INSERT INTO login_failure (account_key) VALUES (:key)"), {"key": account_key})


async def forget_login_failures(session: AsyncSession, account_key: str) -> None:
    await session.execute(text("DELETE FROM login_failure WHERE account_key = :key"), {"key": account_key})


async def set_last_login(session: AsyncSession, org_id: OrgId, user_id: uuid.UUID) -> None:
    await session.execute(
        update(User).where(User.org_id == org_id, User.id == user_id).values(last_login_at=func.now())
    )


# --- the caller of a request ------------------------------------------------------------------

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


async def principal_of_user(reads: Reads, org_id: OrgId, user_id: uuid.UUID) -> asyncpg.Record | None:
    """The user (`user_email`, `user_name`, `role`, `status`) and their org (`slug`, `org_name`)."""
    conn = await reading_connection(reads)
    row: asyncpg.Record | None = await conn.fetchrow(PRINCIPAL_FROM_USER, user_id, org_id)
    return row


async def principal_of_api_token(reads: Reads, token_hash: str) -> asyncpg.Record | None:
    """The token (`id`, `name`, `role`) and its org (`org_id`, `slug`, `org_name`); marks it used."""
    conn = await reading_connection(reads)
    row: asyncpg.Record | None = await conn.fetchrow(PRINCIPAL_FROM_API_TOKEN, token_hash)
    return row
