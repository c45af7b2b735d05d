"""The record of every import (`import_run`), as the migrations build it (`tests/test_schema_models.py`).

The import itself writes with SQL of its own (`imports/service.py`), as does the aggregate it merges with
(`cm_jsonb_merge`, migration 0003, not a table).
"""

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from customer_master.db.base import Base


class ImportRun(Base):
    """One record per import that was read (dry runs and CLI imports too): who, when, which file, counts."""

    __tablename__ = "import_run"
    __table_args__ = (
        PrimaryKeyConstraint("org_id", "id", name="import_run_pkey"),
        CheckConstraint("source IN ('api', 'cli')", name="source"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), server_default=text("gen_random_uuid()"))
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id", ondelete="RESTRICT"))
    # clock_timestamp(): when the import finished, so "newest first" is the order they completed in.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    source: Mapped[str] = mapped_column(Text)
    user_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    user_email: Mapped[str | None] = mapped_column(Text)
    token_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    token_name: Mapped[str | None] = mapped_column(Text)
    file_name: Mapped[str | None] = mapped_column(Text)
    dry_run: Mapped[bool] = mapped_column(Boolean)
    encoding: Mapped[str] = mapped_column(Text)
    delimiter: Mapped[str] = mapped_column(Text)
    row_count: Mapped[int] = mapped_column(Integer)
    imported: Mapped[int] = mapped_column(Integer)
    updated: Mapped[int] = mapped_column(Integer)
    unchanged: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    contacts_created: Mapped[int] = mapped_column(Integer)
    contacts_updated: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)


# The imports of an org, newest first (keyset pagination).
Index("ix_import_run_org_created", ImportRun.org_id, ImportRun.created_at.desc(), ImportRun.id.desc())
