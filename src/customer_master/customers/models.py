"""Customers and their contacts. The schema itself (indexes, triggers) is in the migrations."""

import uuid
from typing import Any

from sqlalchemy import ForeignKey, Text
from sqlalchemy.dialects.postgresql import CITEXT, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from customer_master.db.base import Base, IdMixin, TimestampMixin


class Customer(IdMixin, TimestampMixin, Base):
    __tablename__ = "customer"

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id"))
    name: Mapped[str] = mapped_column(Text)
    erp_customer_number: Mapped[str | None] = mapped_column(Text)
    default_currency: Mapped[str] = mapped_column(Text)
    default_language: Mapped[str] = mapped_column(Text)
    billing_address_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    shipping_address_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    metadata_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class Contact(IdMixin, TimestampMixin, Base):
    __tablename__ = "customer_contact"

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id"))
    customer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    email: Mapped[str] = mapped_column(CITEXT)
    name: Mapped[str | None] = mapped_column(Text)
    is_primary: Mapped[bool] = mapped_column(default=False)
