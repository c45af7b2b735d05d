"""Merges and dismissed duplicate pairs (migration 0009), as the migration builds them.

`tests/test_schema_models.py` compares these models with the migrated schema.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from customer_master.customers.models import customer_reference
from customer_master.db.base import Base
from customer_master.history.models import Xid8


class CustomerMerge(Base):
    """One merge: who into whom, its transaction, and every customer and contact as they were before it."""

    __tablename__ = "customer_merge"
    __table_args__ = (
        PrimaryKeyConstraint("org_id", "id", name="customer_merge_pkey"),
        Index("ix_customer_merge_org_survivor", "org_id", "survivor_id"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id", ondelete="CASCADE"))
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), server_default=text("gen_random_uuid()"))
    # No foreign key: the record outlives a deleted survivor.
    survivor_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    merged_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(UUID(as_uuid=True)))
    txid: Mapped[int] = mapped_column(Xid8, server_default=text("pg_current_xact_id()"))
    customers: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DuplicateDismissal(Base):
    """A pair of customers a user said are not the same (the lower id first); it goes with either customer."""

    __tablename__ = "duplicate_dismissal"
    __table_args__ = (
        PrimaryKeyConstraint("org_id", "customer_low", "customer_high", name="duplicate_dismissal_pkey"),
        CheckConstraint("customer_low < customer_high", name="order"),
        customer_reference("customer_low", "fk_duplicate_dismissal_low"),
        customer_reference("customer_high", "fk_duplicate_dismissal_high"),
        Index("ix_duplicate_dismissal_high", "org_id", "customer_high"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    customer_low: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    customer_high: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
