"""English and German: complete catalogs, compiled .mo in step with the .po, language from the browser."""

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from playwright.sync_api import Browser, expect

from customer_master.web import i18n
from customer_master.web.core import environment
from tests.conftest import PASSWORD, Server
from tests.web.conftest import WebOrg

WEB = Path(i18n.__file__).parent
PO = WEB / "locales" / "de" / "LC_MESSAGES" / "messages.po"
MO = PO.with_suffix(".mo")
KEYWORDS = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}  # as scripts/update-translations.sh


def _source_messages() -> set[str]:
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "True", "lstrip_blocks": "True"}}
    found = extract_from_dir(str(WEB), method_map, options, keywords=KEYWORDS)
    return {message if isinstance(message, str) else message[0] for _, _, message, _, _ in found}


def _catalog() -> dict[str, tuple[list[str], list[str], bool]]:
    """First message id → (ids, translations, fuzzy); a plural message has two ids and two translations."""
    with PO.open("rb") as file:
        return {
            ids[0]: (ids, strings, m.fuzzy)
            for m in read_po(file)
            if m.id
            for ids, strings in [(_as_list(m.id), _as_list(m.string))]
        }


def _as_list(value: object) -> list[str]:
    return [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]


def test_every_text_of_the_ui_has_a_german_translation() -> None:
    catalog = _catalog()
    missing = sorted(_source_messages() - set(catalog))
    assert not missing, f"run scripts/update-translations.sh and translate: {missing}"
    untranslated = [key for key, (_, strings, fuzzy) in catalog.items() if fuzzy or not all(strings)]
    assert not untranslated, untranslated


def test_the_label_tables_reach_the_templates_in_each_language() -> None:
    """`web/labels.py`'s tables, marked with `N_` where they are written, translated where they are shown."""
    english, german = environment("en").globals, environment("de").globals
    assert (english["field_labels"]["billing_address"], german["field_labels"]["billing_address"]) == (
        "Billing address",
        "Rechnungsadresse",
    )
    assert german["signal_labels"]["S1_EMAIL"] == "Absender ist ein Kontakt"
    assert german["reason_labels"]["SIMILAR_NAME"] == "Ähnlicher Name"
    for table in ("field_labels", "signal_labels", "reason_labels"):
        assert english[table].keys() == german[table].keys()
        assert all(german[table][code] != text for code, text in english[table].items() if text != "Name"), table


def test_translations_keep_their_placeholders() -> None:
    placeholder = re.compile(r"%\((\w+)\)[sd]")
    for key, (ids, strings, _) in _catalog().items():
        expected = set(placeholder.findall(ids[0]))
        for string in strings:
            assert set(placeholder.findall(string)) == expected, key


def test_compiled_catalog_matches_the_po_file() -> None:
    with PO.open("rb") as po_file, MO.open("rb") as mo_file:
        po, mo = read_po(po_file), read_mo(mo_file)
    assert _pairs(po) == _pairs(mo), "run scripts/update-translations.sh to compile the .mo"


def _pairs(catalog: Catalog) -> dict[object, object]:
    def key(value: object) -> object:
        return value if isinstance(value, str) else tuple(value)  # type: ignore[call-overload]

    return {key(m.id): key(m.string) for m in catalog if m.id and not m.fuzzy}


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("en-US,en;q=0.9,de;q=0.8", "en"),
        ("fr-FR,de;q=0.5,en;q=0.4", "de"),
        ("fr-CH, fr;q=0.9", "en"),
        ("de;q=0.2, en;q=0.9", "en"),
        ("", "en"),
        ("garbage;;;q=x", "en"),
    ],
)
def test_language_from_accept_language(header: str, language: str) -> None:
    assert i18n.negotiate(header) == language


def test_german_browser_gets_german_and_can_switch(browser: Browser, server: Server, web_org: WebOrg) -> None:
    context = browser.new_context(base_url=server.base_url, locale="de-DE")
    try:
        page = context.new_page()
        page.goto("/login")
        expect(page.get_by_role("heading", level=1)).to_have_text("Anmelden")
        expect(page.locator("html")).to_have_attribute("lang", "de")
        page.get_by_label("Organisation").fill(web_org.slug)
        page.get_by_label("E-Mail").fill(web_org.admin_email)
        page.get_by_label("Passwort").fill(PASSWORD)
        page.get_by_role("button", name="Anmelden").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Kunden")
        expect(page.get_by_role("link", name="Neuer Kunde")).to_be_visible()

        page.get_by_role("button", name="English").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Customers")
        expect(page.get_by_role("button", name="English")).to_have_attribute("aria-pressed", "true")
        page.reload()
        expect(page.get_by_role("heading", level=1)).to_have_text("Customers")
        page.get_by_role("button", name="Deutsch").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Kunden")
    finally:
        context.close()
