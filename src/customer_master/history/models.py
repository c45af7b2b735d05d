"""The change history and the event feed (migration 0007), as the migration builds them.

Triggers on `customer` and `customer_contact` write these tables in the writing transaction, and a
deferred trigger stamps each transaction with its place in the org's feed at commit; the functions and
triggers are in the migration only. `history/repository.py` reads the tables with SQL of its own.
`tests/test_schema_models.py` compares these models with the migrated schema.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    Sequence,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from customer_master.db.base import Base


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (`pg_current_xact_id()`), a type SQLAlchemy does not know."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


# So that reflecting the schema (Alembic's autogenerate) reads `xid8` columns as this type.
ischema_names.setdefault("xid8", Xid8)


class ChangeFeedPosition(Base):
    """One row per org: the last sequence its feed has handed out, moved at each writing commit."""

    __tablename__ = "change_feed_position"

    org_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("org.id", ondelete="CASCADE"), primary_key=True
    )
    last_sequence: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


# The entries' positions, in the order they were written (a transaction's may have gaps).
change_entry_position = Sequence("change_entry_position", data_type=BigInteger, metadata=Base.metadata)


class ChangeTransaction(Base):
    """One row per writing transaction and org: who wrote, from where, and its sequences once committed."""

    __tablename__ = "change_transaction"
    __table_args__ = (
        PrimaryKeyConstraint("org_id", "txid", name="change_transaction_pkey"),
        Index("ix_change_transaction_org_last_sequence", "org_id", "last_sequence", unique=True),
        Index("ix_change_transaction_org_committed_at", "org_id", "committed_at"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id", ondelete="CASCADE"))
    txid: Mapped[int] = mapped_column(Xid8)
    first_position: Mapped[int] = mapped_column(BigInteger)  # below every position of its entries
    first_sequence: Mapped[int | None] = mapped_column(BigInteger)  # NULL until the transaction commits
    last_sequence: Mapped[int | None] = mapped_column(BigInteger)
    committed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    actor: Mapped[dict[str, Any]] = mapped_column(JSONB)
    source: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    import_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    merge_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))


class ChangeEntry(Base):
    """One entry per changed customer or contact and transaction: its fields before and after it."""

    __tablename__ = "change_entry"
    __table_args__ = (
        # No foreign key to its transaction's row (migration 0007: its check would cost every entry a lock).
        PrimaryKeyConstraint("org_id", "txid", "position", name="change_entry_pkey"),
        # A customer's history, and the target of the merge of a second write of one object in one transaction.
        Index("uq_change_entry_customer_object", "org_id", "customer_id", "txid", "object_id", unique=True),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    txid: Mapped[int] = mapped_column(Xid8)
    position: Mapped[int] = mapped_column(BigInteger, server_default=change_entry_position.next_value())
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), server_default=text("gen_random_uuid()"))
    type: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    contact_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    object_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))  # the contact, else the customer
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # the object's fields before (NULL: created)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # and after the transaction (NULL: deleted)
