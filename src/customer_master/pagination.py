"""Keyset cursors (API.md §1): the id and sort key of a page's last row, as `<id>~<key>`.

Opaque to clients, but with a declared shape in which every string is a position: whatever matches the
pattern of the OpenAPI document continues a listing (after the row it names, or where that row would sort),
so a schema-valid cursor is never refused. Anything else is a 422.
"""

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

from fastapi import Query

from customer_master.errors import ValidationFailed

K = TypeVar("K")

UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
SEPARATOR = "~"


def keyset_cursor_pattern(key_pattern: str) -> str:
    """The pattern of `encode_cursor`'s cursors whose key matches `key_pattern` (a listing with a narrower key
    than text declares this, and its `parse_key` takes every key that matches)."""
    return f"^{UUID_PATTERN}{SEPARATOR}{key_pattern}$"


# A text sort key (a customer's `lower(name)`: any Unicode but U+0000, which PostgreSQL text cannot hold).
KEYSET_CURSOR_PATTERN = keyset_cursor_pattern("[^\\x00]*")
KEYSET_CURSOR_DESCRIPTION = (
    "Opaque: the `next_cursor` of the previous page, passed back unchanged (`<id>~<sort key>`; "
    "a value of another shape is a 422)"
)

# A timestamp sort key, as microseconds since 1970-01-01 UTC (17 digits reach the year 5138).
TIME_CURSOR_PATTERN = keyset_cursor_pattern("[0-9]{1,17}")
TIME_CURSOR_MAX_LENGTH = 36 + 1 + 17
TIME_CURSOR_DESCRIPTION = (
    "Opaque: the `next_cursor` of the previous page, passed back unchanged (`<id>~<microseconds since 1970>`; "
    "a value of another shape is a 422)"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The query parameters of the listings: a page's size, and the cursors of each shape.
PageLimit = Annotated[int, Query(ge=1, le=200)]
KeysetCursor = Annotated[
    str | None,
    Query(min_length=1, max_length=2000, pattern=KEYSET_CURSOR_PATTERN, description=KEYSET_CURSOR_DESCRIPTION),
]
TimeCursor = Annotated[
    str | None,
    Query(max_length=TIME_CURSOR_MAX_LENGTH, pattern=TIME_CURSOR_PATTERN, description=TIME_CURSOR_DESCRIPTION),
]

_KEYSET = re.compile(KEYSET_CURSOR_PATTERN.removeprefix("^").removesuffix("$"), re.DOTALL)
_TIME = re.compile(TIME_CURSOR_PATTERN.removeprefix("^").removesuffix("$"))


def _not_a_cursor() -> ValidationFailed:
    return ValidationFailed.one("cursor", "not a cursor this API returned")


def encode_cursor(key: str, row_id: uuid.UUID) -> str:
    """The cursor that continues after the row with text sort key `key` and id `row_id`."""
    return f"{row_id}{SEPARATOR}{key}"


def decode_cursor(cursor: str, parse_key: Callable[[str], K]) -> tuple[K, uuid.UUID]:
    """The sort key (through `parse_key`) and id of a cursor of `encode_cursor`'s shape; anything else is a 422.

    With `parse_key=str` every string of `KEYSET_CURSOR_PATTERN` decodes (the pattern's promise); a narrower
    `parse_key` should come with a pattern of its own (as `decode_time_cursor` has).
    """
    if _KEYSET.fullmatch(cursor) is None:
        raise _not_a_cursor()
    row_id, _, key = cursor.partition(SEPARATOR)
    try:
        return parse_key(key), uuid.UUID(row_id)
    except (ValueError, TypeError):
        raise _not_a_cursor() from None


def encode_time_cursor(at: datetime, row_id: uuid.UUID) -> str:
    """The cursor that continues after the row created at `at` (microseconds, as PostgreSQL keeps them)."""
    return f"{row_id}{SEPARATOR}{(at - EPOCH) // timedelta(microseconds=1)}"


def decode_time_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The timestamp and id of a cursor of `encode_time_cursor`'s shape (every one is a position); else a 422."""
    if _TIME.fullmatch(cursor) is None:
        raise _not_a_cursor()
    row_id, _, micros = cursor.partition(SEPARATOR)
    return EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(row_id)
