"""Bodies of detection (API.md §7) and of the org settings it reads (API.md §3)."""

import re
import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, WithJsonSchema

from customer_master import validation
from customer_master.detection.scoring import Status
from customer_master.schemas import StrictModel

MAX_PUBLIC_DOMAINS_EXTRA = 1000

# A sender or hint is evidence, not an order: a malformed one is not an error, it just finds nothing.
MaybeEmail = Annotated[str | None, StringConstraints(max_length=1000)]


class CustomerHint(StrictModel):
    name: Annotated[str | None, StringConstraints(max_length=1000)] = None
    erp_customer_number: Annotated[str | None, StringConstraints(max_length=1000)] = None
    email: MaybeEmail = None


class DetectRequest(StrictModel):
    from_email: MaybeEmail = Field(
        default=None, description='The sender, as the mail header has it: `"Max" <einkauf@muster.de>`'
    )
    document_text: str | None = Field(default=None, description="The order's text (customer number, header lines)")
    customer_hint: CustomerHint | None = None


class SignalOut(BaseModel):
    signal: str = Field(description="S1_EMAIL, S2_DOMAIN, S4_CUSTOMER_NUMBER or S5_NAME")
    score: float
    value: str


class CandidateOut(BaseModel):
    customer_id: uuid.UUID
    name: str
    erp_customer_number: str | None
    score: float
    signals: list[SignalOut]


class DetectResult(BaseModel):
    status: Status
    selected_customer_id: uuid.UUID | None
    candidates: list[CandidateOut]


# --- org settings -----------------------------------------------------------------------------


def _normalize_domain(value: str) -> str:
    """A mail domain in the form contact e-mails are stored in: lower case, an IDN in Unicode."""
    domain = value.strip()
    if not domain or "@" in domain or (domain.isascii() and not re.fullmatch(validation.MAIL_DOMAIN_PATTERN, domain)):
        raise ValueError(f"not a mail domain: {value!r}")
    domain = domain.rstrip(".")
    try:
        return validation.normalize_email(f"a@{domain}").rpartition("@")[2]
    except ValueError:
        raise ValueError(f"not a mail domain: {value!r}") from None


def _unique(domains: list[str]) -> list[str]:
    return list(dict.fromkeys(domains))


Threshold = Annotated[float, Field(ge=0, le=1, strict=True, allow_inf_nan=False)]
Domain = Annotated[
    str,
    StringConstraints(max_length=validation.MAIL_DOMAIN_MAX_LENGTH),
    AfterValidator(_normalize_domain),
    WithJsonSchema(validation.MAIL_DOMAIN_JSON_SCHEMA),
]
DomainList = Annotated[list[Domain], Field(max_length=MAX_PUBLIC_DOMAINS_EXTRA), AfterValidator(_unique)]


class CustomerDetectionSettings(StrictModel):
    auto_select_threshold: Threshold = 0.90
    min_gap: Threshold = 0.07
    public_domains_extra: DomainList = Field(default_factory=list)


class OrgSettings(StrictModel):
    customer_detection: CustomerDetectionSettings = Field(default_factory=CustomerDetectionSettings)


class CustomerDetectionPatch(StrictModel):
    """A JSON Merge Patch: absent is unchanged, null returns the setting to its default."""

    auto_select_threshold: Threshold | None = None
    min_gap: Threshold | None = None
    public_domains_extra: DomainList | None = None


class OrgSettingsPatch(StrictModel):
    customer_detection: CustomerDetectionPatch | None = None
