"""Bodies of the duplicate pairs and their dismissal (API.md §12)."""

import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from customer_master.schemas import StrictModel

Signal = Literal["SAME_EMAIL", "SAME_DOMAIN", "SIMILAR_NAME"]


class PairCustomer(BaseModel):
    id: uuid.UUID
    name: str
    erp_customer_number: str | None


class Reason(BaseModel):
    signal: Signal
    value: str = Field(description="The shared e-mail or domain; for SIMILAR_NAME the similarity of the company keys")


class DuplicatePair(BaseModel):
    customers: list[PairCustomer] = Field(description="The two customers, the lower id first")
    score: float
    reasons: list[Reason]


def _two_distinct(ids: list[uuid.UUID]) -> list[uuid.UUID]:
    if ids[0] == ids[1]:
        raise ValueError("two different customers")
    return ids


class DismissRequest(StrictModel):
    customer_ids: Annotated[list[uuid.UUID], Field(min_length=2, max_length=2), AfterValidator(_two_distinct)] = Field(
        description="The two customers that are not the same company, in either order"
    )
