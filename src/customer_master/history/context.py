"""Who changes data, from where: the transaction-local settings the history triggers read (migration 0007).

Every write path names its actor and source once per transaction, before its first write; the triggers
store them with the transaction's entries. A write without them (by hand in SQL) is recorded as the
system actor `sql` with source `sql`.
"""

import json
import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import Principal

Source = Literal["api", "web", "cli", "import", "merge"]


@dataclass(frozen=True)
class Actor:
    """API.md §10 `actor`: a user (label: e-mail), an API token (label: its name) or the CLI (label: the command)."""

    type: Literal["user", "api_token", "system"]
    id: uuid.UUID | None
    label: str

    @classmethod
    def of(cls, principal: Principal) -> "Actor":
        if principal.token_id is not None:
            return cls("api_token", principal.token_id, principal.token_name or "")
        return cls("user", principal.user_id, principal.user_email or "")

    @classmethod
    def command(cls, name: str) -> "Actor":
        return cls("system", None, f"customer-master {name}")

    def as_json(self) -> str:
        return json.dumps({"type": self.type, "id": str(self.id) if self.id else None, "label": self.label})


# Through the session (not the driver): it begins the transaction that the settings must live in.
SET_CONTEXT = text("""
SELECT set_config('cm.actor', :actor, true), set_config('cm.source', :source, true),
       set_config('cm.request_id', :request_id, true), set_config('cm.import_id', :import_id, true),
       set_config('cm.merge_id', :merge_id, true)
""")


async def record_changes_as(
    session: AsyncSession,
    actor: Actor,
    source: Source,
    *,
    request_id: str | None = None,
    import_id: uuid.UUID | None = None,
    merge_id: uuid.UUID | None = None,
) -> None:
    """Name who makes this transaction's changes, for their history entries (until it ends)."""
    await session.execute(
        SET_CONTEXT,
        {
            "actor": actor.as_json(),
            "source": source,
            "request_id": request_id or "",
            "import_id": str(import_id) if import_id else "",
            "merge_id": str(merge_id) if merge_id else "",
        },
    )
