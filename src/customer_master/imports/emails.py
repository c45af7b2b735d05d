"""Checking the contact e-mails of an import: only those the org does not already store as written.

The e-mail rule (`validation.normalize_email`, via `rows.normalize_emails`) is the costliest check of a
row (~80 µs a cell here, twice all the other checks together). An e-mail the org already stores exactly as
written passed the rule when it was stored, and the rule is idempotent, so it needs no check — which makes a
nightly re-import of the same contacts much cheaper.

Before staging, the org's stored e-mails are loaded as a sorted array of 64-bit hashes (8 bytes each, so
a million contacts cost 8 MB); a cell whose hash is not in it is certainly not stored and is checked. A
cell whose hash is there is, all but certainly, stored: after staging one query counts the rows whose
e-mail is not stored exactly, and if that differs from the rows checked (a hash collision), every such
e-mail is checked, exactly as without the hashes.

Only the problems are kept: the cells that fail, and those the rule rewrites (case, spaces, an IDN).
(Checking in a worker process while reading was measured too: on 2 shared cores it was slower.)

The e-mails that are checked go through `EmailRule`, which gives the rule's answer without running it for
the common shape (`local@plain.domain`) and runs it once per other distinct domain (see its docstring): a
first import of 100,000 rows spent 8 s of CPU in the rule, ~70 % of it in the domain part (IDNA/UTS-46, per
character), and now spends ~0.3 s.
"""

import array
import asyncio
import bisect
import hashlib
import re
import sys
from collections.abc import Iterable

import asyncpg
import email_validator

from customer_master.auth.tenancy import OrgId
from customer_master.imports.rows import normalize_emails

EMAIL_CHUNK = 10_000

# The first 8 bytes of the MD5 of the e-mail as stored, as a signed big-endian integer (same in Python).
KNOWN_HASHES = """
SELECT string_agg(int8send(h), ''::bytea ORDER BY h)
  FROM (SELECT DISTINCT ('x' || left(md5(email::text), 16))::bit(64)::bigint AS h
          FROM customer_contact WHERE org_id = $1) AS known
"""
# Rows whose e-mail the org does not store exactly as written. With the citext condition the planner can
# probe the (org_id, email) index row by row, best for a few rows; without it, it hashes the org's e-mails
# as text once, best for many (hashing citext costs a lower() per value).
_NOT_STORED = """
  FROM cm_import_row r
 WHERE r.contact_email IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM customer_contact cc
                    WHERE cc.org_id = $1 {} AND cc.email::text = r.contact_email)
"""
_BY_INDEX = _NOT_STORED.format("AND cc.email = r.contact_email::citext")
_BY_HASH = _NOT_STORED.format("")
HASH_FROM_ROWS = 5_000

Problem = tuple[str, str | None, str | None]  # (cell, normalised, error)


# An unquoted local part of ASCII dot-atom text (RFC 5322 3.2.3, email-validator's DOT_ATOM_TEXT) and a domain
# of ASCII letters, digits, hyphens and periods. email-validator takes such a local part as it is written, before
# it looks at the domain (`validate_email`: split, local part, then domain, then the lengths); so within the
# length limits such an address is accepted exactly when the domain is, as `local@<the domain's normal form>`,
# and refused with the domain's reason otherwise.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_ADDRESS = re.compile(rf"({_ATEXT}(?:\.{_ATEXT})*)@([A-Za-z0-9.-]+)")
# Far below every length limit of the rule (254 octets for the address, 320 characters in the API), so that
# none of them depends on the local part: the domain's own limits (253, 63 per label) are the probe's.
SIMPLE_MAX_LENGTH = 200
_PROBE_LOCAL_PART = "a"
# A domain that passes every check of email-validator's `validate_email_domain_name` as it is written (lower-
# cased, its only rewriting of such a domain): ASCII host-name labels of at most 63 characters (letters and
# digits, inner hyphens), at least two labels, the last all letters; no "--" anywhere (so neither Punycode,
# `xn--`, nor the refused "two letters followed by two dashes"); not a special-use name (the library's own list).
_PLAIN_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_SPECIAL_USE_SUFFIXES = tuple(
    suffix for name in email_validator.SPECIAL_USE_DOMAIN_NAMES for suffix in (f".{name}", f"@{name}")
)
# Domains the rule was asked about (those not plain); bounded, like the other per-value caches of a row.
_DOMAIN_CACHE_LIMIT = 10_000


def is_plain_domain(domain: str) -> bool:
    """Whether email-validator accepts `domain` as written (see `_PLAIN_DOMAIN`); False means: ask the rule."""
    return (
        _PLAIN_DOMAIN.fullmatch(domain) is not None
        and "--" not in domain
        and not f"@{domain}".lower().endswith(_SPECIAL_USE_SUFFIXES)
    )


class EmailRule:
    """The API's e-mail rule (`rows.normalize_emails`) with its domain part evaluated once per distinct domain.

    An address of the simple shape above whose domain the rule accepts as itself (lower-cased: no IDN, no
    rewriting) gets the rule's answer, `local@domain` lower-cased, without running the rule: a plain domain
    (`is_plain_domain`) passes the rule's every domain check as written, and any other domain is asked once,
    with a probe address `a@<domain>`. Any other address — another shape, a domain the rule refuses or
    rewrites, a long one — goes through the rule itself, so that every refusal keeps the rule's own message.
    `tests/imports/test_email_rule.py` holds the answers equal to the rule's on tricky and random cells.
    """

    def __init__(self) -> None:
        # domain as written -> True when the rule accepts it as its lower-cased self; False: use the rule.
        self._domains: dict[str, bool] = {}

    def __call__(self, cells: list[str]) -> list[Problem]:
        """`(cell, normalised, None)` or `(cell, None, error)` per cell, as `rows.normalize_emails` answers."""
        results: list[Problem] = []
        for cell in cells:
            address = cell.strip()
            match = _SIMPLE_ADDRESS.fullmatch(address) if len(address) <= SIMPLE_MAX_LENGTH else None
            if match is not None and (is_plain_domain(match[2]) or self._accepts_as_written(match[2])):
                results.append((cell, address.lower(), None))
            else:
                results.extend(normalize_emails([cell]))
        return results

    def problems(self, cells: list[str]) -> list[Problem]:
        """The cells that fail the e-mail rule or that it rewrites."""
        return [result for result in self(cells) if result[2] is not None or result[1] != result[0]]

    def _accepts_as_written(self, domain: str) -> bool:
        accepted = self._domains.get(domain)
        if accepted is None:
            probe = f"{_PROBE_LOCAL_PART}@{domain}"
            ((_, normalized, _),) = normalize_emails([probe])
            accepted = normalized == probe.lower()
            if len(self._domains) < _DOMAIN_CACHE_LIMIT:
                self._domains[domain] = accepted
        return accepted


def _hash(cell: str) -> int:
    return int.from_bytes(hashlib.md5(cell.encode(), usedforsecurity=False).digest()[:8], "big", signed=True)


class KnownEmails:
    """The org's stored e-mails as sorted hashes: `cell in known` is False for any e-mail not stored."""

    def __init__(self, hashes: "array.array[int]") -> None:
        self._hashes = hashes

    def __bool__(self) -> bool:
        return len(self._hashes) > 0

    def __contains__(self, cell: str) -> bool:
        value = _hash(cell)
        index = bisect.bisect_left(self._hashes, value)
        return index < len(self._hashes) and self._hashes[index] == value


async def load_known_emails(conn: asyncpg.Connection, org_id: OrgId) -> KnownEmails:
    packed: bytes | None = await conn.fetchval(KNOWN_HASHES, org_id)
    hashes = array.array("q")
    if packed:
        hashes.frombytes(packed)
        if sys.byteorder == "little":
            hashes.byteswap()
    return KnownEmails(hashes)


class EmailCheck:
    """Collects the e-mails of staged rows that need the rule, checks them, and keeps the problems."""

    def __init__(self, known: KnownEmails) -> None:
        self.known = known
        self.rule = EmailRule()
        self.rows_checked = 0
        self.problems: dict[str, Problem] = {}

    def check(self, cells: Iterable[str]) -> None:
        """In the reading thread, per batch: check the cells that are not stored as written."""
        chosen: dict[str, None] = {}
        for cell in cells:
            if not self.known or cell not in self.known:
                self.rows_checked += 1
                chosen[cell] = None
        self._keep(self.rule.problems(list(chosen)))

    async def finish(self, conn: asyncpg.Connection, org_id: OrgId, staged_rows: int) -> None:
        """Make sure every e-mail not stored as written was checked (see the module's docstring)."""
        not_stored = _BY_HASH if staged_rows >= HASH_FROM_ROWS else _BY_INDEX
        if await conn.fetchval("SELECT count(*)" + not_stored, org_id) == self.rows_checked:
            return
        # A hash collision let an e-mail pass as stored: check every e-mail not stored as written.
        self.problems.clear()
        chunk: list[str] = []
        async for record in conn.cursor("SELECT DISTINCT r.contact_email" + not_stored, org_id, prefetch=EMAIL_CHUNK):
            chunk.append(record[0])
            if len(chunk) == EMAIL_CHUNK:
                self._keep(await asyncio.to_thread(self.rule.problems, chunk))
                chunk = []
        self._keep(await asyncio.to_thread(self.rule.problems, chunk))

    def _keep(self, problems: list[Problem]) -> None:
        for problem in problems:
            self.problems[problem[0]] = problem
