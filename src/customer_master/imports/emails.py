"""Checking the contact e-mails of an import with the API's rule, once per distinct cell and domain.

The e-mail rule (`validation.normalize_email`, via `rows.normalize_emails`) was the costliest check of a
row (~80 µs a cell here, twice all the other checks together), ~70 % of it in the domain part (IDNA/UTS-46,
per character). `EmailRule` gives the rule's answer without running it for the common shape
(`local@plain.domain`) and runs it once per other distinct domain (see its docstring): a first import of
100,000 rows spent 8 s of CPU in the rule and now spends ~0.3 s.

Only the problems are kept: the cells that fail, and those the rule rewrites (case, spaces, an IDN).
(Checking in a worker process while reading was measured too: on 2 shared cores it was slower. Skipping the
e-mails the org already stores as written, found by a sorted array of their hashes, was dropped in issue 13:
hashing each cell cost as much as the rule now does, and loading the hashes and proving no collision let
one through cost two more queries; see bench/RESULTS.md.)
"""

import re
from collections.abc import Iterable

import email_validator

from customer_master.imports.rows import VALUE_CACHE_LIMIT, normalize_emails

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
            if len(self._domains) < VALUE_CACHE_LIMIT:  # the domains asked about (not plain)
                self._domains[domain] = accepted
        return accepted


class EmailCheck:
    """Checks the e-mails of staged rows, each distinct cell once, and keeps the problems."""

    def __init__(self) -> None:
        self.rule = EmailRule()
        self.problems: dict[str, Problem] = {}

    def check(self, cells: Iterable[str]) -> None:
        """In the reading thread, per batch of rows."""
        for problem in self.rule.problems(list(dict.fromkeys(cells))):
            self.problems[problem[0]] = problem
