"""Pydantic building blocks shared by every domain's schemas."""

from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

from customer_master import validation

T = TypeVar("T")


NO_NUL_PATTERN = "^[^\\x00]*$"


def _say_no_nul(schema: dict[str, Any]) -> None:
    """The JSON Schema of `validation.reject_nul`: a pattern on each string property that has none.

    Not on a `format` (an e-mail address, a UUID, a date): none of them holds U+0000 anyway, and a pattern
    beside a format makes generators draw strings for the pattern and discard all but valid addresses.
    """
    for prop in schema.get("properties", {}).values():
        for branch in [prop, *prop.get("anyOf", [])]:
            if branch.get("type") == "string" and not {"pattern", "enum", "format"} & branch.keys():
                branch["pattern"] = NO_NUL_PATTERN


class StrictModel(BaseModel):
    """Request bodies: unknown keys are an error, not silently dropped; no string holds U+0000."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra=_say_no_nul)

    @field_validator("*")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        return validation.reject_nul(value)


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise ValueError("cannot be null")
    return value


def _without_null(schema: dict[str, Any]) -> None:
    """The JSON Schema of a field that may be absent but not null: its type without the null branch."""
    branches = [branch for branch in schema.pop("anyOf", []) if branch != {"type": "null"}]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches
    schema.pop("default", None)


# A merge patch's field that may be left out (None: unchanged) but not sent as null (422 "cannot be null").
NotNull = Annotated[T | None, BeforeValidator(_refuse_null), Field(json_schema_extra=_without_null)]


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
