"""What a detection request is made of: the sender, customer numbers in the text, company names.

Everything here is pure (no database): the public mail-provider list, the customer-number labels
and the legal forms are data in this one module. The database side of the name comparison is
`cm_company_key()` (migration 0002), built from `KEY_SEPARATORS` and `LEGAL_FORM_WORDS`;
`tests/detection` checks that it agrees with `company_key()` here.
"""

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from customer_master import validation

# Fixed signal scores (API.md §7).
S1_EMAIL = 0.95
S2_DOMAIN = 0.75
S4_CUSTOMER_NUMBER = 0.98
S5_BASE, S5_FACTOR, S5_MAX = 0.40, 0.60, 0.85
S5_MIN_SIMILARITY = 0.3
S5_MAX_CUSTOMERS = 5
S5_HEADER_LINES = 10

# Mail providers whose domain says nothing about the customer: a sender on one of these never
# produces S2. Orgs add their own through `customer_detection.public_domains_extra`.
PUBLIC_MAIL_DOMAINS: frozenset[str] = frozenset(
    {
        # international
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "outlook.de",
        "hotmail.com",
        "hotmail.de",
        "hotmail.co.uk",
        "hotmail.fr",
        "hotmail.it",
        "live.com",
        "live.de",
        "live.at",
        "live.co.uk",
        "msn.com",
        "passport.com",
        "yahoo.com",
        "yahoo.de",
        "yahoo.co.uk",
        "yahoo.fr",
        "ymail.com",
        "rocketmail.com",
        "aol.com",
        "aol.de",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "protonmail.ch",
        "pm.me",
        "tutanota.com",
        "tutanota.de",
        "tuta.io",
        "zoho.com",
        "yandex.com",
        "yandex.ru",
        "mail.ru",
        "mail.com",
        "email.com",
        "fastmail.com",
        "hey.com",
        "qq.com",
        "163.com",
        # Germany
        "gmx.de",
        "gmx.net",
        "gmx.com",
        "web.de",
        "t-online.de",
        "freenet.de",
        "posteo.de",
        "posteo.net",
        "mailbox.org",
        "arcor.de",
        "online.de",
        "vodafone.de",
        "kabelmail.de",
        "1und1.de",
        "ionos.de",
        "magenta.de",
        "email.de",
        "emailn.de",
        "gmail.de",
        # Austria
        "gmx.at",
        "aon.at",
        "chello.at",
        "a1.net",
        "liwest.at",
        "utanet.at",
        # Switzerland
        "gmx.ch",
        "bluewin.ch",
        "sunrise.ch",
        "hispeed.ch",
        "swissonline.ch",
        "bluemail.ch",
    }
)

# `Kundennr`, `Kunden-Nr`, `Kundennummer`, `Kd.-Nr`, `Customer No`, `Customer Number`, `Debitor`
# (API.md §7), with the spellings they come in (`Kunden Nr`, `KdNr`, `Customer-No`, `Debitorennr`).
# A label is a whole word: `Kundenbestellnummer` (the customer's order number) is not one.
CUSTOMER_NUMBER_LABELS = (
    r"kunden[- ]?(?:nummer|nr)",
    r"kd\.?[- ]?nr",
    r"customer[- ]?(?:number|no)",
    r"debitor(?:en)?(?:[- ]?(?:nummer|nr))?",
)
CUSTOMER_NUMBER_PATTERN = re.compile(
    r"\b(?:" + "|".join(CUSTOMER_NUMBER_LABELS) + r")\b"
    # then optional `.`, `:`, `#` and spaces (not a line break), then the number
    r"(?:[.:#]|[^\S\r\n])*"
    r"(?P<number>[A-Za-z0-9][A-Za-z0-9\-_./]*)",
    re.IGNORECASE,
)
CUSTOMER_NUMBER_MIN, CUSTOMER_NUMBER_MAX = 3, 20
MAX_CUSTOMER_NUMBERS = 50

# Legal forms as the words they become in a company key (case and accents folded, dots dropped,
# other punctuation turned into spaces): `GmbH & Co. KG` → `gmbh co kg`, `e.K.` → `ek`, `S.p.A.` → `spa`.
# A key keeps every other word in order; these words are left out wherever they stand.
LEGAL_FORM_WORDS: frozenset[str] = frozenset(
    {
        # Germany, Austria, Switzerland
        "gmbh", "ggmbh", "mbh", "ag", "kg", "kgaa", "ohg", "gbr", "ug", "haftungsbeschrankt",
        "ek", "ekfm", "ekfr", "ev", "eg", "se", "og", "co", "sagl",
        # English
        "limited", "ltd", "llc", "llp", "plc", "inc", "incorporated", "corp", "corporation",
        # France, Italy, Spain, Benelux, Nordics, Central Europe
        "sarl", "eurl", "sas", "sasu", "sa", "spa", "srl", "snc", "sl", "slu",
        "bv", "nv", "bvba", "as", "asa", "aps", "ab", "oy", "oyj", "sro", "kft",
    }
)  # fmt: skip
# Word separators of a company key, written so that Python's `re` and PostgreSQL read them alike.
KEY_SEPARATORS = r"[\t\n\r\f\v \u00a0\u2009\u202f,;:!?'\"`´’‘“”„«»()\[\]{}<>/\\|&+*=#@_~^\u2013\u2014-]+"
# What `unaccent` folds beyond combining accents, for the letters German and Nordic names use.
_LETTER_FOLDS = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th"})

_SEPARATOR_RE = re.compile(KEY_SEPARATORS)
_ANGLE_ADDRESS_RE = re.compile(r"<([^<>]*)>\s*$")


@dataclass
class Evidence:
    """What a request offers to look up, normalised the way the stored data is."""

    sender: str | None = None
    domain: str | None = None  # None on a public mail domain: no S2
    numbers: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def normalize_sender(raw: str | None) -> str | None:
    """The sender as contact e-mails are stored (`"Max" <Einkauf@Muster.DE>` → `einkauf@muster.de`).

    Display name and angle brackets are removed, then the address goes through the same
    `validation.normalize_email` as every contact. A sender that is not a valid address is `None`.
    """
    if raw is None:
        return None
    address = raw.strip()
    bracketed = _ANGLE_ADDRESS_RE.search(address)
    if bracketed:
        address = bracketed.group(1)
    address = address.strip()
    if address[:7].lower() == "mailto:":
        address = address[7:]
    address = address.strip().rstrip(".")  # the domain written as a fully qualified name
    if not address or len(address) > 320:
        return None
    try:
        return validation.normalize_email(address)
    except ValueError:
        return None


def email_domain(email: str) -> str:
    """The domain of a normalised e-mail address."""
    return email.rpartition("@")[2]


def is_public_domain(domain: str, extra: Iterable[str] = ()) -> bool:
    """True for a public mail provider (the built-in list, or one of the org's own)."""
    return domain in PUBLIC_MAIL_DOMAINS or domain in set(extra)


def customer_numbers(text: str | None) -> list[str]:
    """Customer numbers written after one of the labels, in order of appearance, each once.

    A number is 3 to 20 characters of letters, digits, `-`, `_`, `.`, `/`, starting with a letter or
    digit; trailing punctuation (`4711.` at the end of a sentence) is not part of it.
    """
    if not text:
        return []
    found: list[str] = []
    for match in CUSTOMER_NUMBER_PATTERN.finditer(text):
        number = match.group("number").rstrip("-_./")
        if CUSTOMER_NUMBER_MIN <= len(number) <= CUSTOMER_NUMBER_MAX and number not in found:
            found.append(number)
            if len(found) == MAX_CUSTOMER_NUMBERS:
                break
    return found


def header_lines(text: str | None, count: int = S5_HEADER_LINES) -> list[str]:
    """The first `count` non-empty lines of the text, trimmed: where a document names its sender."""
    if not text:
        return []
    lines: list[str] = []
    for line in text.splitlines():
        stripped = line.replace("\x00", "").strip()  # PostgreSQL text cannot hold NUL
        if stripped:
            lines.append(stripped)
            if len(lines) == count:
                break
    return lines


def fold_case_and_accents(text: str) -> str:
    """Lower case without accents (`Müller Straße` → `muller strasse`), like `cm_fold()` in the database."""
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(_LETTER_FOLDS))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def company_key(name: str) -> str:
    """What S5 compares: case and accents folded, dots dropped, punctuation as spaces, legal forms left out.

    `Muster GmbH & Co. KG` → `muster`. A name that is nothing but legal forms keeps them (`GmbH` → `gmbh`).
    The database's `cm_company_key()` (migration 0002) is the one the service uses; its accent folding
    is PostgreSQL's `unaccent`, and for Latin-script names the two agree.
    """
    words = _SEPARATOR_RE.sub(" ", fold_case_and_accents(name).replace(".", "")).split()
    kept = [word for word in words if word not in LEGAL_FORM_WORDS]
    return " ".join(kept or words)


def name_score(similarity: float) -> float:
    """The S5 score of a trigram similarity: `min(0.85, 0.40 + 0.60 · sim)`, to 4 decimals."""
    return round(min(S5_MAX, S5_BASE + S5_FACTOR * similarity), 4)
