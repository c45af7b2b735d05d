"""History entries and events (API.md §10, §11): one record, two views."""

import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

EntryType = Literal[
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.merged",
    "customer.merged_away",
    "contact.created",
    "contact.updated",
    "contact.deleted",
]
ENTRY_TYPES: tuple[str, ...] = get_args(EntryType)


class ActorOut(BaseModel):
    type: Literal["user", "api_token", "system"]
    id: uuid.UUID | None
    label: str


class FieldChange(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    from_: Any = Field(alias="from")
    to: Any


class ChangeData(BaseModel):
    """What changed, by whom, from where: an entry without its place in the feed."""

    customer_id: uuid.UUID
    contact_id: uuid.UUID | None
    actor: ActorOut
    source: str = Field(description="`api`, `web`, `cli`, `import` or `merge` (`sql`: written by hand in SQL)")
    request_id: str | None
    import_id: uuid.UUID | None
    merge_id: uuid.UUID | None
    changes: dict[str, FieldChange] = Field(description="Dotted paths into the API object → `from` / `to`")


class HistoryEntry(ChangeData):
    id: uuid.UUID
    sequence: int
    type: EntryType
    occurred_at: datetime


class Event(BaseModel):
    id: uuid.UUID
    sequence: int
    type: EntryType
    occurred_at: datetime
    org_id: uuid.UUID
    data: ChangeData


class EventPage(BaseModel):
    items: list[Event]
    next_cursor: str = Field(description="Pass back as `after`: continues after the last event of this page")
