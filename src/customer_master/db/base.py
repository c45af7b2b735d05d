"""Declarative base with a constraint naming convention and the timestamp columns.

The models describe the schema the migrations build (`tests/test_schema_models.py` fails when they drift);
`customer_master.db.models` imports every domain's models, so that `Base.metadata` holds every table.

The naming convention gives each constraint the name the migrations' SQL gives it: primary and foreign keys
as PostgreSQL names them itself (`org_pkey`, `app_user_org_id_fkey`), since the migrations mostly leave
those names to it; unique rules, indexes and check constraints as the migrations name them. A check
constraint's `name` is the convention's `constraint_name` (`CheckConstraint(..., name="slug")` on `org` is
`ck_org_slug`); any other explicit name is used as it is.
"""

import uuid
from datetime import datetime

from sqlalchemy import DateTime, MetaData, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
