"""The per-org version of the customer names that the in-memory name index follows (migration 0005).

Triggers on `customer` write `customer_name_change` and move `customer_name_version` (see the migration and
`detection/name_index.py`); nothing writes them from Python. `customer_name_change` has no primary key, so
it is a table without a mapped class. The tables as the migrations build them (`tests/test_schema_models.py`).
"""

import uuid

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Table, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from customer_master.db.base import Base


class CustomerNameVersion(Base):
    """One row per org: `version` moves with each committed change of its names, `epoch` on a truncate."""

    __tablename__ = "customer_name_version"

    org_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("org.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), server_default=text("gen_random_uuid()"))
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


# The customers whose names a committed transaction changed, stamped with the org's version at commit.
customer_name_change = Table(
    "customer_name_change",
    Base.metadata,
    Column("org_id", UUID(as_uuid=True), ForeignKey("org.id", ondelete="CASCADE"), nullable=False),
    Column("version", BigInteger),  # NULL until the writing transaction commits
    Column("customer_id", UUID(as_uuid=True)),  # NULL: more changed in one statement than are listed
    Index("ix_customer_name_change_org_version", "org_id", "version"),
)
