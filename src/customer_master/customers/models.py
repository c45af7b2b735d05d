"""Customers and their contacts. The schema itself (indexes, triggers) is in the migrations.

The keys are declared as migration 0006 made them: `org_id` is in every primary key, unique rule and
foreign key (DESIGN.md "Scale-out"). The ORM identifies a row by (org_id, id), not by `IdMixin`'s key on
`id` alone, so its refreshes look rows up by org too.
"""

import uuid
from typing import Any

from sqlalchemy import ForeignKey, ForeignKeyConstraint, Index, PrimaryKeyConstraint, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import CITEXT, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from customer_master.db.base import Base, TimestampMixin


class Customer(TimestampMixin, Base):
    __tablename__ = "customer"
    __table_args__ = (
        PrimaryKeyConstraint("org_id", "id", name="customer_pkey"),
        Index(
            "uq_customer_org_erp",
            "org_id",
            "erp_customer_number",
            unique=True,
            postgresql_where="erp_customer_number IS NOT NULL",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), server_default=text("gen_random_uuid()"))
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id"))
    name: Mapped[str] = mapped_column(Text)
    erp_customer_number: Mapped[str | None] = mapped_column(Text)
    default_currency: Mapped[str] = mapped_column(Text)
    default_language: Mapped[str] = mapped_column(Text)
    billing_address_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    shipping_address_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    metadata_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class Contact(TimestampMixin, Base):
    __tablename__ = "customer_contact"
    __table_args__ = (
        PrimaryKeyConstraint("org_id", "id", name="customer_contact_pkey"),
        ForeignKeyConstraint(
            ["org_id", "customer_id"],
            ["customer.org_id", "customer.id"],
            name="fk_customer_contact_customer",
            ondelete="CASCADE",
        ),
        UniqueConstraint("org_id", "customer_id", "email", name="uq_contact_customer_email"),
        Index("uq_contact_one_primary", "org_id", "customer_id", unique=True, postgresql_where="is_primary"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), server_default=text("gen_random_uuid()"))
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id"))
    customer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    email: Mapped[str] = mapped_column(CITEXT)
    name: Mapped[str | None] = mapped_column(Text)
    is_primary: Mapped[bool] = mapped_column(default=False)
