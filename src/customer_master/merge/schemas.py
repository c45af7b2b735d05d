"""The merge and undo bodies of API.md §12."""

import uuid
from typing import Literal

from pydantic import BaseModel, Field, StrictBool

from customer_master.customers.schemas import CustomerOut
from customer_master.schemas import StrictModel

# The fields a merge takes from one customer as a whole (`pick`); `metadata` is merged key by key otherwise.
PickField = Literal[
    "name",
    "erp_customer_number",
    "default_currency",
    "default_language",
    "billing_address",
    "shipping_address",
    "metadata",
]

MAX_MERGED = 50


class MergeRequest(StrictModel):
    survivor_id: uuid.UUID
    merged_ids: list[uuid.UUID] = Field(
        min_length=1,
        max_length=MAX_MERGED,
        json_schema_extra={"uniqueItems": True},
        description="The customers merged into the survivor, in order (not the survivor, no id twice)",
    )
    pick: dict[PickField, uuid.UUID] = Field(
        default_factory=dict, description="Per field, the customer (survivor or merged) whose value the result takes"
    )
    dry_run: StrictBool = False


class MergeResult(BaseModel):
    merge_id: uuid.UUID | None = Field(description="null for a dry run; `POST /merges/{merge_id}/undo` takes it")
    customer: CustomerOut
    merged_ids: list[uuid.UUID]
    dry_run: bool


class UndoResult(BaseModel):
    customers: list[CustomerOut] = Field(description="The survivor, then the merged customers, as before the merge")
