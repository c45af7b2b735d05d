"""Keyset cursors (API.md §1): the sort key and id of a page's last row, opaque to clients."""

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from typing import TypeVar

from customer_master.errors import ValidationFailed

K = TypeVar("K")

# The JSON Schema of a keyset cursor: opaque (base64url), only ever a `next_cursor` handed back unchanged.
KEYSET_CURSOR_PATTERN = "^[A-Za-z0-9_-]+$"
KEYSET_CURSOR_DESCRIPTION = (
    "Opaque: the `next_cursor` of the previous page, passed back unchanged; any other value is a 422"
)


def encode_cursor(key: str, row_id: uuid.UUID) -> str:
    """The cursor that continues after the row with sort key `key` and id `row_id`."""
    return base64.urlsafe_b64encode(json.dumps([key, str(row_id)]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, parse_key: Callable[[str], K]) -> tuple[K, uuid.UUID]:
    """The sort key (through `parse_key`) and id of a cursor this API returned; anything else is a 422."""
    try:
        key, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(key, str) or not isinstance(row_id, str) or "\x00" in key:
            raise ValueError
        return parse_key(key), uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed.one("cursor", "not a cursor this API returned") from None
