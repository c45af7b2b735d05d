"""The UI's languages: English (the message ids themselves) and German, from gettext catalogs.

The catalogs live in `locales/<lang>/LC_MESSAGES/messages.po`, compiled to `messages.mo` beside them
(`scripts/update-translations.sh` extracts, updates and compiles; a test keeps the .mo in step).
"""

import gettext
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

from babel.support import Translations
from starlette.requests import Request

LANGUAGES = {"en": "English", "de": "Deutsch"}
DEFAULT_LANGUAGE = "en"
LANGUAGE_COOKIE = "cm_lang"
LOCALE_DIR = Path(__file__).parent / "locales"
DOMAIN = "messages"

_RANGE = re.compile(r"^\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$")


def negotiate(accept_language: str | None) -> str:
    """The best of our languages for an `Accept-Language` header (q-values honoured), else English."""
    best, best_q = DEFAULT_LANGUAGE, 0.0
    for position, part in enumerate((accept_language or "").split(",")[:50]):
        match = _RANGE.match(part)
        if match is None:
            continue
        try:
            quality = float(match.group(2)) if match.group(2) is not None else 1.0
        except ValueError:
            continue
        language = match.group(1).lower()
        # Earlier entries win ties, as the header lists preferences in order.
        if language in LANGUAGES and quality > best_q and quality > 0:
            best, best_q = language, quality - position * 1e-6
    return best


def language_of(request: Request) -> str:
    """The language chosen with the switcher (a cookie), else the browser's."""
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return negotiate(request.headers.get("accept-language"))


@cache
def translations(language: str) -> gettext.NullTranslations:
    if language == DEFAULT_LANGUAGE:
        return gettext.NullTranslations()
    return Translations.load(str(LOCALE_DIR), [language], DOMAIN)


def gettext_for(request: Request) -> Callable[[str], str]:
    """`_` for messages made in Python (flash messages, error titles)."""
    return translations(language_of(request)).gettext
