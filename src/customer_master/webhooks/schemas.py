"""Webhook endpoints, their deliveries and replays (API.md §11 "Push")."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

from customer_master.errors import ValidationFailed
from customer_master.history.service import EVENT_TYPE_PATTERN, parse_types
from customer_master.schemas import NotNull, StrictModel

Url = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
Description = Annotated[str, StringConstraints(max_length=500)]
EventTypes = Annotated[
    # The pattern (from ENTRY_TYPES) for the document; `checked_types` refuses with the list of known types.
    list[
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=100),
            Field(json_schema_extra={"pattern": EVENT_TYPE_PATTERN}),
        ]
    ],
    Field(min_length=1, max_length=50, description="Exact event types or `prefix.*`; null: every type"),
]


def checked_types(types: list[str] | None) -> list[str] | None:
    """The rule of the feed's `types=` (exact types or `prefix.*`), one type per item; duplicates dropped."""
    if types is None:
        return None
    for name in types:
        if "," in name:
            raise ValueError("one type per item")
        try:
            parse_types(name)
        except ValidationFailed as exc:
            raise ValueError(exc.message) from None
    return list(dict.fromkeys(types))


class WebhookCreate(StrictModel):
    url: Url = Field(description="https; with CM_WEBHOOK_ALLOW_LOOPBACK=1 also http(s) on a loopback address")
    types: EventTypes | None = None
    description: Description | None = None

    @field_validator("types")
    @classmethod
    def _known_types(cls, types: list[str] | None) -> list[str] | None:
        return checked_types(types)


class WebhookPatch(StrictModel):
    """A JSON merge patch: only the fields sent change (`types: null` means every type)."""

    url: NotNull[Url] = None
    types: EventTypes | None = None
    description: Description | None = None
    status: NotNull[Literal["ACTIVE", "DISABLED"]] = Field(
        default=None, description="ACTIVE also resumes a FAILING endpoint where it stopped"
    )

    @field_validator("types")
    @classmethod
    def _known_types(cls, types: list[str] | None) -> list[str] | None:
        return checked_types(types)


class Webhook(BaseModel):
    id: uuid.UUID
    url: str
    types: list[str] | None
    description: str | None
    status: Literal["ACTIVE", "DISABLED", "FAILING"]
    created_at: datetime


class WebhookCreated(Webhook):
    secret: str = Field(description="`whsec_…`: shown in this answer only")


class WebhookSecret(BaseModel):
    secret: str = Field(description="`whsec_…`: shown in this answer only; the old one signs on for a while")


class ReplayRequest(StrictModel):
    after: Annotated[str, StringConstraints(min_length=1, max_length=20)] = Field(
        description="An event cursor (`next_cursor` of the feed, or an event's `sequence`)"
    )


class ReplayAccepted(BaseModel):
    after: str = Field(description="Where the endpoint goes on from: the cursor given, or its own when that is earlier")


class Delivery(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    attempt: int = Field(description="1 for the first attempt at this event, counting again after a 2xx or replay")
    status_code: int | None
    error: str | None
    duration_ms: int
    created_at: datetime
