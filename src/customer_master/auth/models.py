"""Orgs (tenants), their users and API tokens, and the failed logins kept for throttling.

The tables as the migrations build them (`tests/test_schema_models.py` compares them); the `updated_at`
triggers are in the migrations only. `login_failure` has no primary key, so it is a table without a
mapped class.
"""

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Column, DateTime, ForeignKey, Index, Table, Text, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import CITEXT, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from customer_master.db.base import Base, IdMixin, TimestampMixin


class Role(enum.StrEnum):
    VIEWER = "VIEWER"
    OPS = "OPS"
    INTEGRATOR = "INTEGRATOR"
    ADMIN = "ADMIN"


# API.md §2, for the API's role dependencies and the web UI alike: who may change customers, contacts and
# imports, and who administers the org (users, tokens, settings, deletes).
WRITER_ROLES = frozenset({Role.INTEGRATOR, Role.ADMIN})
ADMIN_ROLES = frozenset({Role.ADMIN})


class UserStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"


def _one_of(column: str, values: type[enum.StrEnum]) -> str:
    """The check that `column` holds a member of `values`: a new member without a migration is a drift."""
    return f"{column} IN ({', '.join(repr(str(value)) for value in values)})"


class Org(IdMixin, TimestampMixin, Base):
    __tablename__ = "org"
    __table_args__ = (CheckConstraint("slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'", name="slug"),)

    name: Mapped[str] = mapped_column(Text)
    slug: Mapped[str] = mapped_column(Text, unique=True)
    settings_json: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "app_user"
    __table_args__ = (
        UniqueConstraint("org_id", "email", name="uq_app_user_org_email"),
        CheckConstraint(_one_of("role", Role), name="role"),
        CheckConstraint(_one_of("status", UserStatus), name="status"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id", ondelete="RESTRICT"))
    email: Mapped[str] = mapped_column(CITEXT)
    name: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, default=UserStatus.ACTIVE, server_default=UserStatus.ACTIVE.value)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiToken(IdMixin, Base):
    __tablename__ = "api_token"
    __table_args__ = (
        UniqueConstraint("token_hash", name="uq_api_token_hash"),
        CheckConstraint(_one_of("role", Role), name="role"),
        Index("ix_api_token_org", "org_id", "created_at"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    token_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# Failed logins per account ("org-slug:email", before any org is known), for throttling across processes.
login_failure = Table(
    "login_failure",
    Base.metadata,
    Column("account_key", Text, nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_login_failure_account", "account_key", "failed_at"),
)
