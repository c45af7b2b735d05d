"""The CSV columns and the per-row validation: the API's field rules (`customers/schemas.py`) per cell.

A row becomes a staging record (normalised values, `None` for an empty cell) or a list of errors
`{row, field, value, error}` that a person can act on.
"""

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from customer_master.customers.schemas import (
    ADDRESS_FIELDS,
    METADATA_MAX_BYTES,
    Country,
    Currency,
    CustomerName,
    ErpNumber,
    Language,
    Metadata,
    OptionalText,
)
from customer_master.errors import reason_of
from customer_master.imports.reader import FileRejected
from customer_master.schemas import Email

CUSTOMER_COLUMNS = ("name", "erp_customer_number", "default_currency", "default_language")
BILLING_COLUMNS = tuple(f"billing_{key}" for key in ADDRESS_FIELDS)
SHIPPING_COLUMNS = tuple(f"shipping_{key}" for key in ADDRESS_FIELDS)
CONTACT_COLUMNS = ("contact_email", "contact_name", "contact_is_primary")
# The import format, in the order the export writes it; `metadata_<key>` columns follow.
COLUMNS = CUSTOMER_COLUMNS + BILLING_COLUMNS + SHIPPING_COLUMNS + CONTACT_COLUMNS
REQUIRED_COLUMNS = ("name", "default_currency", "default_language")
METADATA_PREFIX = "metadata_"
# The fields of a customer that rows with one ERP number merge (the last non-empty cell wins).
MERGED_COLUMNS = ("name", "default_currency", "default_language") + BILLING_COLUMNS + SHIPPING_COLUMNS
# The staging table's columns, in the order of a record.
STAGING_COLUMNS = ("row_no", *COLUMNS, "metadata")
# The customer's cells in a record (the columns before the contact's).
CUSTOMER_SLOTS = slice(1, 1 + len(CUSTOMER_COLUMNS + BILLING_COLUMNS + SHIPPING_COLUMNS))

TRUE_WORDS = frozenset({"true", "1", "yes", "ja", "x"})
FALSE_WORDS = frozenset({"false", "0", "no", "nein"})
# How many distinct values each per-value cache of an import keeps (values beyond are converted each time).
VALUE_CACHE_LIMIT = 10_000


class CellError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Header:
    """Which column sits where; metadata columns with their keys; the columns that are ignored."""

    positions: dict[str, int]
    metadata: list[tuple[int, str]]
    unknown: list[str]


def parse_header(names: list[str], line: int) -> Header:
    """Case-insensitive names; a missing required column or a name given twice rejects the file."""
    positions: dict[str, int] = {}
    metadata: list[tuple[int, str]] = []
    metadata_keys: set[str] = set()
    unknown: list[str] = []
    for index, raw_name in enumerate(names):
        name = raw_name.strip()
        lowered = name.lower()
        if not name:
            continue  # e.g. a trailing delimiter: an unnamed column carries nothing
        if lowered in COLUMNS:
            if lowered in positions:
                raise FileRejected(f"the column {lowered} appears twice in the header", line=line, field=lowered)
            positions[lowered] = index
        elif lowered.startswith(METADATA_PREFIX) and len(name) > len(METADATA_PREFIX):
            key = name[len(METADATA_PREFIX) :]
            if key in metadata_keys:
                raise FileRejected(f"the column {name} appears twice in the header", line=line, field=name)
            metadata_keys.add(key)
            metadata.append((index, key))
        else:
            unknown.append(name)
    missing = [column for column in REQUIRED_COLUMNS if column not in positions]
    if missing:
        reasons = [{"field": column, "reason": f"missing required column {column}", "line": line} for column in missing]
        rejected = FileRejected(f"missing required column {', '.join(missing)}", line=line, field=missing[0])
        rejected.details["errors"] = reasons
        raise rejected
    return Header(positions, metadata, unknown)


def _pydantic(type_: Any) -> Callable[[Any], Any]:
    """The validator of one of the API's field types (its core validator: no wrapper per call)."""
    adapter: TypeAdapter[Any] = TypeAdapter(type_)
    return adapter.validator.validate_python


def _reason(exc: ValidationError) -> tuple[str, str, dict[str, Any]]:
    error = exc.errors()[0]
    return error["type"], reason_of(error), dict(error.get("ctx") or {})


def _converter(column: str, validate: Callable[[str], Any], label: str, hint: str = "") -> Callable[[str], Any]:
    """The API's rule for one column, with a message that names the column and what to write."""

    def convert(cell: str) -> Any:
        try:
            return validate(cell)
        except ValidationError as exc:
            kind, reason, ctx = _reason(exc)
            if kind == "string_too_long":
                raise CellError(f"{column} is too long: at most {ctx.get('max_length')} characters") from None
            if hint:
                raise CellError(f"Invalid {label}: {cell} ({hint})") from None
            detail = reason.removeprefix("not a valid e-mail address: ")
            raise CellError(f"Invalid {label}: {cell}" + ("" if cell in detail else f" ({detail})")) from None

    return convert


def _cached(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """Columns with few distinct values (currency, language, country, booleans) are checked once each."""
    results: dict[str, Any] = {}

    def cached(cell: str) -> Any:
        try:
            outcome = results[cell]
        except KeyError:
            try:
                outcome = convert(cell)
            except CellError as exc:
                outcome = exc
            if len(results) < VALUE_CACHE_LIMIT:
                results[cell] = outcome
        if isinstance(outcome, CellError):
            raise CellError(outcome.message)
        return outcome

    return cached


def parse_is_primary(cell: str) -> bool:
    word = cell.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise CellError(f"Invalid contact_is_primary: {cell} (write true, 1, yes, ja or x; false, 0, no or nein)")


def _converters() -> dict[str, Callable[[str], Any]]:
    text = _pydantic(OptionalText)
    country = _cached(
        _converter("country", _pydantic(Country), "country code", "use an ISO 3166-1 alpha-2 code such as DE or AT")
    )
    converters: dict[str, Callable[[str], Any]] = {
        "name": _converter("name", _pydantic(CustomerName), "name"),
        "erp_customer_number": _converter(
            "erp_customer_number",
            _pydantic(ErpNumber),
            "ERP number",
            "use 1 to 100 ASCII letters, digits, '-', '_', '.', '/'",
        ),
        "default_currency": _cached(_converter("default_currency", _pydantic(Currency), "currency code")),
        "default_language": _cached(
            _converter("default_language", _pydantic(Language), "language tag", "use a BCP 47 tag such as de-DE or en")
        ),
        "contact_email": _converter("contact_email", _pydantic(Email), "e-mail address"),
        "contact_name": _converter("contact_name", text, "contact_name"),
        "contact_is_primary": _cached(parse_is_primary),
    }
    for column in BILLING_COLUMNS + SHIPPING_COLUMNS:
        converter = country if column.endswith("_country") else _converter(column, text, column)
        # Cities, postal codes and states repeat from row to row; streets mostly do not.
        repeating = column.endswith(("_street2", "_city", "_postal_code", "_state"))
        converters[column] = _cached(converter) if repeating else converter
    return converters


_check_metadata = _pydantic(Metadata)
_check_email = _converter("contact_email", _pydantic(Email), "e-mail address")


def normalize_emails(cells: list[str]) -> list[tuple[str, str | None, str | None]]:
    """`(cell, normalised, None)` or `(cell, None, error)` for each cell: the API's e-mail rule, in bulk."""
    results: list[tuple[str, str | None, str | None]] = []
    for cell in cells:
        try:
            results.append((cell, _check_email(cell.strip()), None))
        except CellError as exc:
            results.append((cell, None, exc.message))
    return results


def _convert_cells(
    line: int,
    fields: list[str],
    cells: list[tuple[int, int, str, Callable[[str], Any]]],
    values: list[Any],
    errors: list[dict[str, Any]],
) -> None:
    """Each cell's value into its slot of `values`, or its error into `errors`; empty cells stay None."""
    count = len(fields)
    for index, slot, column, convert in cells:
        if index >= count:
            continue  # a short record: the missing cells are empty
        raw = fields[index]
        cell = raw.strip()
        if not cell:
            continue
        try:
            values[slot] = convert(cell)
        except CellError as exc:
            errors.append({"row": line, "field": column, "value": raw, "error": exc.message})


@dataclass
class RowValidator:
    """Turns `(line, fields)` into a staging record, or into the row's errors.

    With `defer_email`, a row's `contact_email` is staged as written and checked later, in bulk, by
    `emails.EmailRule` (the rule, once per distinct domain). A row that fails for another reason has its
    e-mail checked here, so that its report lists every problem.
    """

    header: Header
    defer_email: bool = False
    contact_without_email: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        converters = _converters()
        slots = {column: index for index, column in enumerate(STAGING_COLUMNS)}
        deferred = {"contact_email"} if self.defer_email else set()
        cells = [
            (self.header.positions[column], slots[column], column, converters[column])
            for column in COLUMNS
            if column in self.header.positions and column not in deferred
        ]
        customer_slots = range(CUSTOMER_SLOTS.start, CUSTOMER_SLOTS.stop)
        self._customer_cells = [cell for cell in cells if cell[1] in customer_slots]
        self._contact_cells = [cell for cell in cells if cell[1] not in customer_slots]
        positions = [cell[0] for cell in self._customer_cells] or [0]
        # The customer's cells as written, compared with the previous row's (one C call per row).
        self._customer_key = operator.itemgetter(*positions)
        self._customer_width = max(positions) + 1
        self._previous_customer: tuple[Any, list[Any]] | None = None
        self._email_index = self.header.positions.get("contact_email") if self.defer_email else None
        self._width = len(STAGING_COLUMNS)
        self._metadata_slot = slots["metadata"]
        self._email_slot = slots["contact_email"]
        self._name_slot = slots["contact_name"]
        self._primary_slot = slots["contact_is_primary"]
        self._metadata_json: dict[tuple[str | None, ...], str] = {}

    def validate(self, line: int, fields: list[str]) -> tuple[tuple[Any, ...] | None, list[dict[str, Any]]]:
        values: list[Any] = [None] * self._width
        values[0] = line
        errors: list[dict[str, Any]] = []
        count = len(fields)
        # Rows of one customer (one per contact, as ERPs and our export write them) repeat its cells: when they
        # are as in the previous row, so is what they become. (A row with errors is not remembered.)
        key = self._customer_key(fields) if count >= self._customer_width else None
        previous = self._previous_customer
        if key is not None and previous is not None and previous[0] == key:
            values[CUSTOMER_SLOTS] = previous[1]
        else:
            _convert_cells(line, fields, self._customer_cells, values, errors)
            self._previous_customer = (key, values[CUSTOMER_SLOTS]) if key is not None and not errors else None
        _convert_cells(line, fields, self._contact_cells, values, errors)
        if self.header.metadata:
            self._metadata(line, fields, values, errors)
        if self._email_index is not None and self._email_index < count and fields[self._email_index].strip():
            email = fields[self._email_index]
            if errors:
                ((_, _, problem),) = normalize_emails([email])
                if problem is not None:
                    errors.append({"row": line, "field": "contact_email", "value": email, "error": problem})
            values[self._email_slot] = email
        if errors:
            return None, errors
        if values[self._email_slot] is None and (values[self._name_slot] is not None or values[self._primary_slot]):
            # No e-mail, no contact (contacts are matched by e-mail); the warning says so.
            self.contact_without_email.append(line)
            values[self._name_slot] = values[self._primary_slot] = None
        return tuple(values), errors

    def _metadata(self, line: int, fields: list[str], values: list[Any], errors: list[dict[str, Any]]) -> None:
        count = len(fields)
        # Stored as written (strings, not trimmed), so an exported value comes back identical.
        written = tuple(
            fields[index] if index < count and fields[index].strip() else None for index, _ in self.header.metadata
        )
        # Metadata values repeat from row to row (payment terms, groups): each combination is encoded once.
        encoded = self._metadata_json.get(written)
        if encoded is not None:
            values[self._metadata_slot] = encoded
            return
        metadata = {key: value for (_, key), value in zip(self.header.metadata, written, strict=True) if value}
        if not metadata:
            return
        try:
            # The API's size limit; JSON at most sextuples a text (\u escapes), so short cells cannot break it.
            if 6 * sum(len(key) + len(value) + 6 for key, value in metadata.items()) > METADATA_MAX_BYTES:
                _check_metadata(metadata)
        except ValidationError as exc:
            index, key = max(
                (cell for cell, value in zip(self.header.metadata, written, strict=True) if value),
                key=lambda cell: len(fields[cell[0]]),
            )
            errors.append(
                {
                    "row": line,
                    "field": METADATA_PREFIX + key,
                    "value": fields[index],
                    "error": f"metadata is too large: {_reason(exc)[1]}",
                }
            )
            return
        encoded = json.dumps(metadata, ensure_ascii=False)
        if len(self._metadata_json) < VALUE_CACHE_LIMIT:
            self._metadata_json[written] = encoded
        values[self._metadata_slot] = encoded
