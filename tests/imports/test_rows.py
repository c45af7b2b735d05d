"""Per-row validation (API.md §6 "Per row"): the API's rules, reported by physical line, CSV column and value."""

import httpx
import pytest

from tests.conftest import Db, OrgContext, create_customer
from tests.imports.helpers import HEADER, count_customers, customer_by_erp, errors_by_row, import_ok


def test_each_failing_row_is_reported_and_every_valid_row_applied(
    client: httpx.Client, db: Db, org: OrgContext
) -> None:
    content = "\n".join(
        [
            HEADER + ",billing_country,contact_email,contact_is_primary",
            "Gut GmbH,R-1,EUR,de-DE,DE,einkauf@gut.de,ja",  # line 2
            "Falsch GmbH,R-2,USD123,de-DE,DE,,",  # line 3
            ",R-3,EUR,de-DE,,,",  # line 4: new customer without a name
            "Land GmbH,R-4,EUR,xx-!!,XX,kein-email,vielleicht",  # line 5: four problems, one failed row
            "Auch Gut AG,R-5,eur,en,at,,",  # line 6
        ]
    )

    report = import_ok(client, org, content + "\n")

    assert (report["rows"], report["imported"], report["failed"]) == (5, 2, 3)
    assert report["errors"] == [
        {"row": 3, "field": "default_currency", "value": "USD123", "error": "Invalid currency code: USD123"},
        {"row": 4, "field": "name", "value": "", "error": "Missing required field: name"},
        {
            "row": 5,
            "field": "default_language",
            "value": "xx-!!",
            "error": "Invalid language tag: xx-!! (use a BCP 47 tag such as de-DE or en)",
        },
        {
            "row": 5,
            "field": "billing_country",
            "value": "XX",
            "error": "Invalid country code: XX (use an ISO 3166-1 alpha-2 code such as DE or AT)",
        },
        {
            "row": 5,
            "field": "contact_email",
            "value": "kein-email",
            "error": "Invalid e-mail address: kein-email (An email address must have an @-sign.)",
        },
        {
            "row": 5,
            "field": "contact_is_primary",
            "value": "vielleicht",
            "error": "Invalid contact_is_primary: vielleicht (write true, 1, yes, ja or x; false, 0, no or nein)",
        },
    ]
    assert count_customers(db, org) == 2
    customer = customer_by_erp(client, org, "R-5")
    assert (customer["default_currency"], customer["default_language"]) == ("EUR", "en")
    assert customer["billing_address"]["country"] == "AT"


def test_row_numbers_are_physical_lines_also_after_a_field_with_newlines(client: httpx.Client, org: OrgContext) -> None:
    content = (
        HEADER + ",billing_street\r\n"  # line 1
        '"Mehr\r\nzeilig\r\nGmbH",L-1,EUR,de,"Hof\r\n3"\r\n'  # lines 2-5
        "\r\n"  # line 6: blank
        "Kaputt GmbH,L-2,EURO,de,\r\n"  # line 7
        'Noch eine,L-3,EUR,"de\nDE",\r\n'  # lines 8-9
        "Letzte GmbH,L-4,XYZ,de,\r\n"  # line 10
    )

    report = import_ok(client, org, content)

    assert [(error["row"], error["field"]) for error in report["errors"]] == [
        (7, "default_currency"),
        (8, "default_language"),
        (10, "default_currency"),
    ]
    assert customer_by_erp(client, org, "L-1")["name"] == "Mehr\r\nzeilig\r\nGmbH"


def test_validation_is_the_apis(client: httpx.Client, org: OrgContext) -> None:
    long_text = "x" * 501
    content = "\n".join(
        [
            HEADER + ",billing_street,contact_email",
            f"{long_text},V-1,EUR,de,,",
            "A GmbH,V 2,EUR,de,,",
            f"B GmbH,V-3,EUR,de,{long_text},",
            "C GmbH,V-4,EUR,de,,a@b",
            "  Getrimmt GmbH  ,  V-5  , chf , DE-at ,  Weg 1  ,  Max@Example.COM  ",
        ]
    )

    report = import_ok(client, org, content + "\n")

    assert [(e["row"], e["field"], e["error"]) for e in report["errors"]] == [
        (2, "name", "name is too long: at most 500 characters"),
        (
            3,
            "erp_customer_number",
            "Invalid ERP number: V 2 (use 1 to 100 ASCII letters, digits, '-', '_', '.', '/')",
        ),
        (4, "billing_street", "billing_street is too long: at most 500 characters"),
        (
            5,
            "contact_email",
            "Invalid e-mail address: a@b (The part after the @-sign is not valid. It should have a period.)",
        ),
    ]
    assert report["errors"][0]["value"] == long_text
    customer = customer_by_erp(client, org, "V-5")
    assert customer["name"] == "Getrimmt GmbH"
    assert (customer["default_currency"], customer["default_language"]) == ("CHF", "de-AT")
    assert customer["billing_address"]["street"] == "Weg 1"
    assert [contact["email"] for contact in customer["contacts"]] == ["max@example.com"]


@pytest.mark.parametrize(
    ("word", "primary"),
    [(w, True) for w in ("true", "1", "YES", "Ja", "x", "X")] + [(w, False) for w in ("false", "0", "No", "NEIN")],
)
def test_contact_is_primary_words(client: httpx.Client, org: OrgContext, word: str, primary: bool) -> None:
    report = import_ok(client, org, HEADER + f",contact_email,contact_is_primary\nA GmbH,P-1,EUR,de,a@a.de,{word}\n")

    assert report["failed"] == 0
    (contact,) = customer_by_erp(client, org, "P-1")["contacts"]
    assert contact["is_primary"] is primary


def test_a_new_customer_needs_the_required_fields_a_matched_one_does_not(client: httpx.Client, org: OrgContext) -> None:
    create_customer(client, org, erp_customer_number="M-1", name="Alt GmbH")
    content = HEADER + ",billing_city\n,M-1,,,Graz\n,M-2,,,Linz\nNeu GmbH,,EUR,,\n"

    report = import_ok(client, org, content)

    assert (report["updated"], report["imported"], report["failed"]) == (1, 0, 2)
    assert errors_by_row(report) == {
        3: [
            {"row": 3, "field": "name", "value": "", "error": "Missing required field: name"},
            {"row": 3, "field": "default_currency", "value": "", "error": "Missing required field: default_currency"},
            {"row": 3, "field": "default_language", "value": "", "error": "Missing required field: default_language"},
        ],
        4: [{"row": 4, "field": "default_language", "value": "", "error": "Missing required field: default_language"}],
    }
    customer = customer_by_erp(client, org, "M-1")
    assert customer["name"] == "Alt GmbH"
    assert customer["billing_address"]["city"] == "Graz"


def test_rows_of_one_new_erp_number_supply_the_required_fields_together(client: httpx.Client, org: OrgContext) -> None:
    content = HEADER + ",contact_email\n,G-1,,,lager@g.de\nGruppe GmbH,G-1,EUR,de,einkauf@g.de\n,G-2,,,x@g2.de\n"

    report = import_ok(client, org, content)

    assert (report["imported"], report["failed"]) == (1, 1)
    assert {error["row"] for error in report["errors"]} == {4}
    customer = customer_by_erp(client, org, "G-1")
    assert sorted(contact["email"] for contact in customer["contacts"]) == ["einkauf@g.de", "lager@g.de"]


def test_a_contact_name_without_email_creates_no_contact_and_is_warned_about(
    client: httpx.Client, org: OrgContext
) -> None:
    report = import_ok(client, org, HEADER + ",contact_name,contact_is_primary\nA GmbH,N-1,EUR,de,Herr Meier,ja\n")

    assert (report["imported"], report["failed"], report["contacts_created"]) == (1, 0, 0)
    assert [w["code"] for w in report["warnings"]] == ["CONTACT_WITHOUT_EMAIL"]
    assert report["warnings"][0]["rows"] == [2]
    assert customer_by_erp(client, org, "N-1")["contacts"] == []


def test_metadata_columns_become_string_values(client: httpx.Client, org: OrgContext) -> None:
    report = import_ok(client, org, HEADER + ",metadata_rabatt,metadata_zahlungsziel\nA GmbH,MD-1,EUR,de, 10 ,\n")

    assert report["imported"] == 1
    assert customer_by_erp(client, org, "MD-1")["metadata"] == {"rabatt": " 10 "}


def test_metadata_over_the_apis_size_limit_fails_the_row(client: httpx.Client, org: OrgContext) -> None:
    big = "ü" * 70_000

    report = import_ok(client, org, HEADER + f",metadata_notiz,metadata_klein\nA GmbH,MB-1,EUR,de,{big},x\n")

    assert report["failed"] == 1
    (error,) = report["errors"]
    assert (error["row"], error["field"], error["value"]) == (2, "metadata_notiz", big)
    assert error["error"] == "metadata is too large: must be at most 65536 bytes as JSON"
