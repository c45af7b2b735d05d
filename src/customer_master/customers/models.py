"""Customers and their contacts, as the migrations build them (`tests/test_schema_models.py` compares them).

The keys are declared as migration 0006 made them: `org_id` is in every primary key, unique rule and
foreign key (DESIGN.md "Scale-out"). The ORM identifies a row by (org_id, id), not by `IdMixin`'s key on
`id` alone, so its refreshes look rows up by org too.

Only the migrations hold what a model cannot declare: the SQL functions behind the generated columns and
the expression indexes (`cm_fold`, `cm_company_key`), the `updated_at` triggers, and the triggers that
record name changes for the detection's name index (`detection.models`).
"""

import uuid
from typing import Any

from sqlalchemy import (
    Boolean,
    Computed,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
    cast,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, CITEXT, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from customer_master.db.base import Base, TimestampMixin


def customer_reference(column: str, name: str) -> ForeignKeyConstraint:
    """`column` names a customer of the row's own org, (org_id, column) → customer (org_id, id), and the row
    goes with that customer (ON DELETE CASCADE)."""
    return ForeignKeyConstraint(["org_id", column], ["customer.org_id", "customer.id"], name=name, ondelete="CASCADE")


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
        Index("idx_customer_org_name", "org_id", "name"),
        # q= arm: the folded name's trigrams, led by org_id (btree_gin), so a search sees only its org.
        Index(
            "ix_customer_org_name_fold_trgm",
            "org_id",
            "name_fold",
            postgresql_using="gin",
            postgresql_ops={"name_fold": "gin_trgm_ops"},
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), server_default=text("gen_random_uuid()"))
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(Text)
    erp_customer_number: Mapped[str | None] = mapped_column(Text)
    default_currency: Mapped[str] = mapped_column(Text)
    default_language: Mapped[str] = mapped_column(Text)
    billing_address_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    shipping_address_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    metadata_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The company-name key of detection signal S5 (migration 0002) and the case- and accent-folded name
    # that search filters on (0004), computed by PostgreSQL on every write. SQL reads them; the ORM leaves
    # them out of its SELECTs and RETURNINGs, and refuses to load them (an async lazy load cannot work).
    name_key: Mapped[str | None] = mapped_column(
        Text, Computed("cm_company_key(name)", persisted=True), deferred=True, deferred_raiseload=True
    )
    name_fold: Mapped[str | None] = mapped_column(
        Text, Computed("cm_fold(name)", persisted=True), deferred=True, deferred_raiseload=True
    )
    # A merge (migration 0009): set on a customer merged into another (a tombstone); the survivor's ERP
    # aliases, in merge order (`CustomerErpAlias` indexes them).
    merged_into: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    erp_aliases: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))


# Keyset pagination, ORDER BY lower(name), id within the org's live customers; it carries what a search
# walking the org in name order filters on, so that walk reads the index only.
Index(
    "ix_customer_org_lower_name_id",
    Customer.org_id,
    func.lower(Customer.name),
    Customer.id,
    postgresql_include=["name", "name_fold", "erp_customer_number"],
    postgresql_where=text("merged_into IS NULL"),
)
# q= arm: ERP number prefix.
Index(
    "ix_customer_org_erp_prefix",
    Customer.org_id,
    func.lower(Customer.erp_customer_number).label("erp_prefix"),
    postgresql_ops={"erp_prefix": "text_pattern_ops"},
)


class Contact(TimestampMixin, Base):
    __tablename__ = "customer_contact"
    __table_args__ = (
        PrimaryKeyConstraint("org_id", "id", name="customer_contact_pkey"),
        customer_reference("customer_id", "fk_customer_contact_customer"),
        UniqueConstraint("org_id", "customer_id", "email", name="uq_contact_customer_email"),
        Index("uq_contact_one_primary", "org_id", "customer_id", unique=True, postgresql_where="is_primary"),
        Index("idx_customer_contact_email", "org_id", "email"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), server_default=text("gen_random_uuid()"))
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id", ondelete="RESTRICT"))
    customer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    email: Mapped[str] = mapped_column(CITEXT)
    name: Mapped[str | None] = mapped_column(Text)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))


# Detection signals S1 and S2: the contacts of an org by the domain of their e-mail address.
Index(
    "ix_customer_contact_org_domain",
    Contact.org_id,
    func.lower(func.split_part(cast(Contact.email, Text), "@", 2)),
)


class CustomerErpAlias(Base):
    """The index of every survivor's `erp_aliases` (kept in step by a trigger): one holder per number and org."""

    __tablename__ = "customer_erp_alias"
    __table_args__ = (
        PrimaryKeyConstraint("org_id", "erp_customer_number", name="customer_erp_alias_pkey"),
        customer_reference("customer_id", "fk_customer_erp_alias_customer"),
        Index("ix_customer_erp_alias_customer", "org_id", "customer_id"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    erp_customer_number: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
