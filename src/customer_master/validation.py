"""Field rules shared by the API, the CSV import and the CLI: one implementation of each."""

import re
from typing import Any, TypeVar

import langcodes
import pycountry
from email_validator import EmailNotValidError, validate_email

ERP_NUMBER_PATTERN = re.compile(r"[A-Za-z0-9\-_./]{1,100}")
CURRENCY_CODES = tuple(sorted(currency.alpha_3 for currency in pycountry.currencies))
COUNTRY_CODES = tuple(sorted(country.alpha_2 for country in pycountry.countries))
# BCP 47's shape (RFC 5646 §2.1): a language subtag, then subtags of 1..8 letters or digits. Registration
# (which subtags exist) is checked by `normalize_language` alone: JSON Schema cannot say it.
LANGUAGE_TAG_PATTERN = r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$"

# The JSON Schema of each rule, for the OpenAPI document (the pydantic types in `schemas.py` carry them).
CURRENCY_JSON_SCHEMA = {
    "type": "string",
    "enum": list(CURRENCY_CODES),
    "description": "An active ISO 4217 code (also accepted in lower case, stored upper-cased)",
}
COUNTRY_JSON_SCHEMA = {
    "type": "string",
    "enum": [*COUNTRY_CODES, ""],
    "description": 'An ISO 3166-1 alpha-2 code (also accepted in lower case, stored upper-cased); `""` is null',
}
LANGUAGE_JSON_SCHEMA = {
    "type": "string",
    "minLength": 2,
    "maxLength": 100,
    "pattern": LANGUAGE_TAG_PATTERN,
    "format": "bcp47",
    "description": "A valid (registered) BCP 47 language tag, e.g. `de-DE`; stored in canonical case",
}
ERP_NUMBER_JSON_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 100,
    "pattern": f"^{ERP_NUMBER_PATTERN.pattern}$",
    "description": "1..100 ASCII letters, digits, `-`, `_`, `.`, `/`; compared exactly",
}
# A mail domain (`public_domains_extra`): host name labels (RFC 1123) with a letter last, as email-validator
# takes them; an IDN in its ASCII (A-label) form — its Unicode form is taken too, checked by IDNA alone.
# What JSON Schema cannot say: the special-use names (`.test`, `.local`, …) and hyphens in places 3 and 4
# of a label that is not Punycode.
MAIL_DOMAIN_MAX_LENGTH = 252  # an address has at most 254 characters (RFC 3696 erratum 1690), `a@` included
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
MAIL_DOMAIN_PATTERN = rf"^(?:{_LABEL}\.)+(?:[A-Za-z0-9][A-Za-z0-9-]{{0,61}})?[A-Za-z]\.?$"
MAIL_DOMAIN_JSON_SCHEMA = {
    "type": "string",
    "minLength": 3,
    "maxLength": MAIL_DOMAIN_MAX_LENGTH,
    "pattern": MAIL_DOMAIN_PATTERN,
    "description": "A mail domain, e.g. `example.com` (an IDN also in its Unicode form); stored lower-cased",
}
T = TypeVar("T")


def contains_nul(value: Any) -> bool:
    """Whether a string, or any key or value inside JSON lists and objects, holds U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(key) or contains_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(item) for item in value)
    return False


def reject_nul(value: T) -> T:
    """PostgreSQL text and jsonb cannot hold U+0000: refuse it as bad input instead of failing in the database."""
    if contains_nul(value):
        raise ValueError("must not contain NUL characters (\\u0000)")
    return value


def normalize_email(value: str) -> str:
    """Trimmed, syntax-checked (no DNS lookup), lower-cased; the domain in its Unicode form."""
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid e-mail address: {exc}") from None
    return result.normalized.lower()


def normalize_currency(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 3 or pycountry.currencies.get(alpha_3=code) is None:
        raise ValueError(f"not an ISO 4217 currency code: {value}")
    return code


def normalize_country(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"not an ISO 3166-1 alpha-2 country code: {value}")
    return code


def normalize_language(value: str) -> str:
    """A valid BCP 47 tag in the canonical case of RFC 5646 §2.1.1 (`de-de` → `de-DE`)."""
    tag = value.strip()
    if not tag or not langcodes.tag_is_valid(tag):
        raise ValueError(f"not a valid BCP 47 language tag: {value}")
    subtags = tag.split("-")
    canonical = [subtags[0].lower()]
    after_singleton = subtags[0].lower() == "x"
    for subtag in subtags[1:]:
        if after_singleton or len(subtag) == 1:
            after_singleton = True
            canonical.append(subtag.lower())
        elif len(subtag) == 2:
            canonical.append(subtag.upper())
        elif len(subtag) == 4 and subtag.isalpha():
            canonical.append(subtag.title())
        else:
            canonical.append(subtag.lower())
    return "-".join(canonical)


def normalize_erp_number(value: str) -> str:
    number = value.strip()
    if not ERP_NUMBER_PATTERN.fullmatch(number):
        raise ValueError("must be 1 to 100 characters of ASCII letters, digits, '-', '_', '.', '/'")
    return number
