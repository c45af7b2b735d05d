"""Pydantic building blocks shared by every domain's schemas."""

from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from customer_master import validation

T = TypeVar("T")


class StrictModel(BaseModel):
    """Request bodies: unknown keys are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        return validation.reject_nul(value)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class Items(BaseModel, Generic[T]):
    items: list[T]


Email = Annotated[
    str,
    StringConstraints(max_length=320),
    AfterValidator(validation.normalize_email),
    Field(json_schema_extra={"format": "email"}),
]
