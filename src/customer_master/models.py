"""Tables of the API's own plumbing rather than of one domain (as `schemas.py` holds shared pydantic parts).

`idempotency_key`: one record per creating request sent with an `Idempotency-Key` (API.md §1), read and
written by `idempotency.py`. As the migrations build it (`tests/test_schema_models.py`).
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Integer, PrimaryKeyConstraint, Text, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from customer_master.db.base import Base


class IdempotencyRecord(Base):
    """The record of one `Idempotency-Key`: the first successful response to it, per org, method and exact path."""

    __tablename__ = "idempotency_key"
    __table_args__ = (PrimaryKeyConstraint("org_id", "method", "path", "key", name="idempotency_key_pkey"),)

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("org.id", ondelete="RESTRICT"))
    method: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(Text)
    request_hash: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
