"""Customer and contact bodies: the validation rules of API.md §4 and §5."""

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, StrictBool, StringConstraints, WithJsonSchema, field_validator

from customer_master import validation
from customer_master.schemas import Email, NotNull, StrictModel

METADATA_MAX_BYTES = 64 * 1024
ADDRESS_FIELDS = ("street", "street2", "city", "postal_code", "state", "country")


def _blank_to_none(value: str | None) -> str | None:
    return value or None


OptionalText = Annotated[
    str | None, StringConstraints(strip_whitespace=True, max_length=500), AfterValidator(_blank_to_none)
]
CustomerName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
ErpNumber = Annotated[
    str, AfterValidator(validation.normalize_erp_number), WithJsonSchema(validation.ERP_NUMBER_JSON_SCHEMA)
]
Currency = Annotated[
    str, AfterValidator(validation.normalize_currency), WithJsonSchema(validation.CURRENCY_JSON_SCHEMA)
]
Language = Annotated[
    str,
    StringConstraints(max_length=100),
    AfterValidator(validation.normalize_language),
    WithJsonSchema(validation.LANGUAGE_JSON_SCHEMA),
]
Country = Annotated[
    str,
    AfterValidator(lambda v: validation.normalize_country(v) if v.strip() else ""),
    WithJsonSchema(validation.COUNTRY_JSON_SCHEMA),
]


class Address(StrictModel):
    street: OptionalText = None
    street2: OptionalText = None
    city: OptionalText = None
    postal_code: OptionalText = None
    state: OptionalText = None
    country: Annotated[Country | None, AfterValidator(_blank_to_none)] = None


def address_json(address: Address | None) -> dict[str, Any] | None:
    """The stored form: every key present, or None when every field is empty."""
    if address is None:
        return None
    values = address.model_dump()
    return values if any(values.values()) else None


def _check_metadata_size(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(json.dumps(value, ensure_ascii=False).encode()) > METADATA_MAX_BYTES:
        raise ValueError(f"must be at most {METADATA_MAX_BYTES} bytes as JSON")
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_check_metadata_size)]


class ContactIn(StrictModel):
    email: Email
    name: OptionalText = None
    is_primary: StrictBool = False


class ContactPatch(StrictModel):
    email: NotNull[Email] = None
    name: OptionalText = None
    is_primary: NotNull[StrictBool] = None


class CustomerFields(StrictModel):
    """The fields of a customer that a client sets (create, and the result of a merge patch)."""

    name: CustomerName
    erp_customer_number: ErpNumber | None = None
    default_currency: Currency
    default_language: Language
    billing_address: Address | None = None
    shipping_address: Address | None = None
    metadata: Metadata | None = None


class CustomerCreate(CustomerFields):
    contacts: list[ContactIn] = Field(default_factory=list, max_length=1000)

    @field_validator("contacts")
    @classmethod
    def one_primary_and_unique_emails(cls, contacts: list[ContactIn]) -> list[ContactIn]:
        emails = [contact.email for contact in contacts]
        if len(set(emails)) != len(emails):
            raise ValueError("the same e-mail appears twice")
        if sum(contact.is_primary for contact in contacts) > 1:
            raise ValueError("at most one contact may be primary")
        return contacts


class CustomerPatch(StrictModel):
    """A JSON Merge Patch (RFC 7396): absent is unchanged, null clears, objects merge key by key."""

    name: NotNull[CustomerName] = None
    erp_customer_number: ErpNumber | None = None
    default_currency: NotNull[Currency] = None
    default_language: NotNull[Language] = None
    billing_address: Address | None = None
    shipping_address: Address | None = None
    metadata: dict[str, Any] | None = None


class AddressOut(BaseModel):
    street: str | None
    street2: str | None
    city: str | None
    postal_code: str | None
    state: str | None
    country: str | None


class ContactOut(BaseModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    email: str
    name: str | None
    is_primary: bool
    created_at: datetime
    updated_at: datetime


class CustomerOut(BaseModel):
    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    erp_customer_number: str | None
    erp_aliases: list[str] = Field(description="Read-only: the ERP numbers of the customers merged into this one")
    default_currency: str
    default_language: str
    billing_address: AddressOut | None
    shipping_address: AddressOut | None
    metadata: dict[str, Any]
    contacts: list[ContactOut]
    created_at: datetime
    updated_at: datetime


class CustomerListItem(BaseModel):
    id: uuid.UUID
    name: str
    erp_customer_number: str | None
    default_currency: str
    default_language: str
    billing_address: AddressOut | None
    contact_count: int
