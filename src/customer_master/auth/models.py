"""Orgs (tenants), their users and API tokens. The schema itself is in the migrations."""

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Text
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


class Org(IdMixin, TimestampMixin, Base):
    __tablename__ = "org"

    name: Mapped[str] = mapped_column(Text)
    slug: Mapped[str] = mapped_column(Text, unique=True)
    settings_json: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "app_user"

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id"))
    email: Mapped[str] = mapped_column(CITEXT)
    name: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, default=UserStatus.ACTIVE)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiToken(IdMixin, Base):
    __tablename__ = "api_token"

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id"))
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    token_hash: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
