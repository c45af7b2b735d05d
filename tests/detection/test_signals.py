"""The pure parts of detection: sender normalisation, customer numbers, header lines, company keys."""

import pytest

from customer_master.detection import signals
from customer_master.validation import normalize_email


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"Max Mustermann" <Einkauf@Muster.DE>', "einkauf@muster.de"),
        ("Max Mustermann <einkauf@muster.de>", "einkauf@muster.de"),
        ("<einkauf@muster.de>", "einkauf@muster.de"),
        ("   einkauf@muster.de   ", "einkauf@muster.de"),
        ("EINKAUF@MUSTER.DE", "einkauf@muster.de"),
        ("einkauf@muster.de.", "einkauf@muster.de"),
        ('"Einkauf" < einkauf@muster.de. >', "einkauf@muster.de"),
        ("mailto:einkauf@muster.de", "einkauf@muster.de"),
        ("info@Müller.DE", "info@müller.de"),
        ("info@xn--mller-kva.de", "info@müller.de"),
        ('"Müller, Hans" <h.mueller@bäckerei-müller.at>', "h.mueller@bäckerei-müller.at"),
    ],
)
def test_sender_is_normalised_like_contact_emails(raw: str, expected: str) -> None:
    assert signals.normalize_sender(raw) == expected


def test_the_idn_sender_equals_the_stored_contact_email() -> None:
    stored = normalize_email("Info@Müller.de")
    assert signals.normalize_sender("Info <info@xn--mller-kva.de>") == stored


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "Max Mustermann",
        "einkauf@",
        "@muster.de",
        "einkauf@muster",
        "a@b@c.de",
        "<>",
        "x" * 400 + "@a.de",
    ],
)
def test_a_malformed_sender_is_no_sender(raw: str | None) -> None:
    assert signals.normalize_sender(raw) is None


def test_public_domains_cover_the_big_providers_and_the_org_list() -> None:
    for domain in ("gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "yahoo.com",
                   "icloud.com", "gmx.de", "gmx.at", "gmx.ch", "gmx.net", "web.de", "t-online.de", "freenet.de",
                   "bluewin.ch", "aon.at", "posteo.de", "mailbox.org", "proton.me", "protonmail.com"):  # fmt: skip
        assert signals.is_public_domain(domain), domain
    assert not signals.is_public_domain("muster.de")
    assert signals.is_public_domain("muster.de", ["muster.de"])
    assert signals.email_domain("einkauf@muster.de") == "muster.de"


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("Kundennr.: 4711", "4711"),
        ("Kundennr: 4711", "4711"),
        ("Kunden-Nr 4711", "4711"),
        ("Kunden-Nr.: 4711", "4711"),
        ("Kundennummer: K-4711", "K-4711"),
        ("KUNDENNUMMER K-4711", "K-4711"),
        ("Customer No. 4711", "4711"),
        ("customer no: 4711", "4711"),
        ("Customer Number: AB/12.3", "AB/12.3"),
        ("Customer Number #4711", "4711"),
        ("Debitor 4711", "4711"),
        ("Kd.-Nr. 4711", "4711"),
        ("Ihre Kd.-Nr.:4711, Datum 12.11.2026", "4711"),
        ("Bitte liefern an Kundennr. 4711.", "4711"),
        ("Kundennr. 12345678901234567890", "12345678901234567890"),
        ("Kundennr.\t\t 4711_A", "4711_A"),
    ],
)
def test_customer_number_after_a_label(text: str, number: str) -> None:
    assert signals.customer_numbers(f"Bestellung\n{text}\nMit freundlichen Grüßen") == [number]


@pytest.mark.parametrize(
    "text",
    [
        "Bestellnummer 4711",
        "Bestell-Nr. 4711",
        "Auftragsnummer: 4711",
        "Order No. 4711",
        "Order Number: 4711",
        "Rechnungsnr 4711",
        "Rechnungsnummer: 4711",
        "Invoice No. 4711",
        "Kundenbestellnummer 4711",  # the customer's order number, not the customer's number
        "Kundennr. 47",  # too short
        "Kundennr. 123456789012345678901",  # too long
        "Kundennr.\n4711",  # the label's line ends
        "Customer Notes 4711",
        "Kundennr. -4711",  # must start with a letter or digit
    ],
)
def test_no_customer_number_without_its_label(text: str) -> None:
    assert signals.customer_numbers(text) == []


def test_every_number_once_in_order() -> None:
    text = "Kundennr. 4711\nCustomer No 0815\nKundennummer: 4711"
    assert signals.customer_numbers(text) == ["4711", "0815"]
    assert signals.customer_numbers(None) == []


def test_header_lines_are_the_first_ten_non_empty_lines_trimmed() -> None:
    text = "\n\n  Muster GmbH  \n\n" + "\n".join(f"line {i}" for i in range(20))
    lines = signals.header_lines(text)
    assert lines[0] == "Muster GmbH"
    assert lines[1:] == [f"line {i}" for i in range(9)]
    assert signals.header_lines("") == []


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Muster GmbH", "muster"),
        ("Muster GmbH & Co. KG", "muster"),
        ("Muster AG", "muster"),
        ("MUSTER KG", "muster"),
        ("Müller e.K.", "muller"),
        ("Bäckerei Groß OHG", "backerei gross"),
        ("Rossi S.p.A.", "rossi"),
        ("Dupont SARL", "dupont"),
        ("Acme Ltd.", "acme"),
        ("Acme, Inc.", "acme"),
        ("Start UG (haftungsbeschränkt)", "start"),
        ("Meier AG & Co. KGaA Niederlassung Süd", "meier niederlassung sud"),
        ("GmbH", "gmbh"),  # nothing but a legal form: kept
        ("Schmidt & Söhne", "schmidt sohne"),
        ("", ""),
    ],
)
def test_company_key_folds_and_leaves_out_legal_forms(name: str, key: str) -> None:
    assert signals.company_key(name) == key


def test_s5_score_from_similarity() -> None:
    assert signals.name_score(0.3) == 0.58
    assert signals.name_score(0.25) == 0.55
    assert signals.name_score(0.75) == 0.85
    assert signals.name_score(1.0) == 0.85
    assert signals.name_score(0.5833333134651184) == 0.75  # a float4 from PostgreSQL
