"""Webhook endpoints and the log of every delivery attempt (migration 0008), as the migration builds them.

`webhooks/repository.py` reads and writes them with SQL of its own; the `updated_at` trigger is in the
migration only. `tests/test_schema_models.py` compares these models with the migrated schema.
"""

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from customer_master.db.base import Base, TimestampMixin


class WebhookEndpoint(TimestampMixin, Base):
    """One endpoint and its place in the org's feed (`cursor`), with the retry state of the next event."""

    __tablename__ = "webhook_endpoint"
    __table_args__ = (
        PrimaryKeyConstraint("org_id", "id", name="webhook_endpoint_pkey"),
        CheckConstraint("status IN ('ACTIVE', 'DISABLED', 'FAILING')", name="status"),
        # The worker's question, once a second: which active endpoints are due?
        Index("ix_webhook_endpoint_active", "org_id", "next_attempt_at", postgresql_where=text("status = 'ACTIVE'")),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id", ondelete="CASCADE"))
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), server_default=text("gen_random_uuid()"))
    url: Mapped[str] = mapped_column(Text)
    types: Mapped[list[str] | None] = mapped_column(ARRAY(Text))  # NULL: every type
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="ACTIVE")
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cursor: Mapped[int] = mapped_column(BigInteger)
    revision: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    """One attempt to deliver one event to one endpoint; it goes with its endpoint."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        PrimaryKeyConstraint("org_id", "id", name="webhook_delivery_pkey"),
        ForeignKeyConstraint(
            ["org_id", "endpoint_id"],
            ["webhook_endpoint.org_id", "webhook_endpoint.id"],
            name="fk_webhook_delivery_endpoint",
            ondelete="CASCADE",
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), server_default=text("gen_random_uuid()"))
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    sequence: Mapped[int] = mapped_column(BigInteger)
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())


# An endpoint's deliveries, newest first (`GET /webhooks/{id}/deliveries`).
Index(
    "ix_webhook_delivery_endpoint_created",
    WebhookDelivery.org_id,
    WebhookDelivery.endpoint_id,
    WebhookDelivery.created_at.desc(),
    WebhookDelivery.id.desc(),
)
