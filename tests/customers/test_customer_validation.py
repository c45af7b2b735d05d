"""The field rules of API.md §4, on create (and, where PATCH has its own path, on update)."""

from typing import Any

import httpx
import pytest

from tests.conftest import Db, OrgContext, assert_error, create_customer, customer_body
from tests.customers.helpers import error_fields

FULL_ADDRESS = {
    "street": "Musterstraße 1",
    "street2": "Hinterhaus",
    "city": "München",
    "postal_code": "80331",
    "state": "Bayern",
    "country": "DE",
}


def post_customer(client: httpx.Client, org: OrgContext, **overrides: Any) -> httpx.Response:
    return client.post("/api/v1/customers", json=customer_body(**overrides), headers=org.headers())


def assert_rejected(response: httpx.Response, *fields: str) -> dict[str, Any]:
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error_fields(error) == set(fields), error
    assert all(problem["reason"] for problem in error["details"]["errors"])
    return error


# --- name -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("  Muster GmbH \n", "Muster GmbH"),
        ("株式会社テスト", "株式会社テスト"),
        ("Ölwerke Zürich AG 🛢", "Ölwerke Zürich AG 🛢"),
        ("x", "x"),
        ("n" * 500, "n" * 500),
        ("  " + "n" * 500 + "  ", "n" * 500),
    ],
)
def test_name_is_stored_trimmed(client: httpx.Client, org: OrgContext, given: str, stored: str) -> None:
    assert create_customer(client, org, name=given)["name"] == stored


@pytest.mark.parametrize("name", ["", "   ", "\t\n", "n" * 501, None, 42, ["a"]])
def test_bad_name_is_422(client: httpx.Client, org: OrgContext, name: Any) -> None:
    assert_rejected(post_customer(client, org, name=name), "name")


def test_missing_required_fields_are_all_reported(client: httpx.Client, org: OrgContext) -> None:
    response = client.post("/api/v1/customers", json={}, headers=org.headers())
    assert_rejected(response, "name", "default_currency", "default_language")


def test_every_problem_of_a_body_is_reported_at_once(client: httpx.Client, org: OrgContext) -> None:
    response = post_customer(
        client,
        org,
        name=" ",
        default_currency="EURO",
        default_language="??",
        billing_address={"country": "XX", "fax": "1"},
        metadata=[1],
    )
    assert_rejected(
        response,
        "name",
        "default_currency",
        "default_language",
        "billing_address.country",
        "billing_address.fax",
        "metadata",
    )


# --- ERP number -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (" 4711 ", "4711"),
        ("AB-12_x./9", "AB-12_x./9"),
        ("E" * 100, "E" * 100),
        (None, None),
    ],
)
def test_erp_number_is_trimmed_and_kept_as_given(
    client: httpx.Client, org: OrgContext, given: str | None, stored: str | None
) -> None:
    assert create_customer(client, org, erp_customer_number=given)["erp_customer_number"] == stored


@pytest.mark.parametrize("erp", ["", "   ", "47 11", "ä-1", "4711#", "E" * 101, 4711])
def test_bad_erp_number_is_422(client: httpx.Client, org: OrgContext, erp: Any) -> None:
    assert_rejected(post_customer(client, org, erp_customer_number=erp), "erp_customer_number")


# --- currency and language --------------------------------------------------------------------


@pytest.mark.parametrize(("given", "stored"), [("eur", "EUR"), (" usd ", "USD"), ("Chf", "CHF"), ("JPY", "JPY")])
def test_currency_is_upper_cased(client: httpx.Client, org: OrgContext, given: str, stored: str) -> None:
    assert create_customer(client, org, default_currency=given)["default_currency"] == stored


@pytest.mark.parametrize("currency", ["", "EURO", "XYZ", "EU", "€", None, 978])
def test_bad_currency_is_422(client: httpx.Client, org: OrgContext, currency: Any) -> None:
    assert_rejected(post_customer(client, org, default_currency=currency), "default_currency")


@pytest.mark.parametrize(
    ("given", "stored"),
    [("de-de", "de-DE"), ("DE", "de"), ("en-gb", "en-GB"), ("zh-hant-tw", "zh-Hant-TW"), ("sr-latn", "sr-Latn")],
)
def test_language_is_stored_in_canonical_case(client: httpx.Client, org: OrgContext, given: str, stored: str) -> None:
    assert create_customer(client, org, default_language=given)["default_language"] == stored


@pytest.mark.parametrize("language", ["", "not a language", "de_DE_x", "123", "-de", None])
def test_bad_language_is_422(client: httpx.Client, org: OrgContext, language: Any) -> None:
    assert_rejected(post_customer(client, org, default_language=language), "default_language")


# --- addresses --------------------------------------------------------------------------------


def test_full_addresses_are_stored_as_given(client: httpx.Client, org: OrgContext) -> None:
    shipping = {**FULL_ADDRESS, "country": "at", "city": "Wien"}
    customer = create_customer(client, org, billing_address=FULL_ADDRESS, shipping_address=shipping)

    assert customer["billing_address"] == FULL_ADDRESS
    assert customer["shipping_address"] == {**shipping, "country": "AT"}


@pytest.mark.parametrize("which", ["billing_address", "shipping_address"])
def test_unknown_address_key_is_422_with_a_dotted_field(client: httpx.Client, org: OrgContext, which: str) -> None:
    assert_rejected(post_customer(client, org, **{which: {"street": "A", "foo": "bar"}}), f"{which}.foo")


@pytest.mark.parametrize("which", ["billing_address", "shipping_address"])
@pytest.mark.parametrize("country", ["XX", "Germany", "D", "DEU", "1"])
def test_bad_country_is_422(client: httpx.Client, org: OrgContext, which: str, country: str) -> None:
    assert_rejected(post_customer(client, org, **{which: {"country": country}}), f"{which}.country")


def test_country_is_upper_cased(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, billing_address={"city": "Bern", "country": " ch "})
    assert customer["billing_address"]["country"] == "CH"


def test_blank_address_fields_are_stored_as_null(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(
        client, org, billing_address={"street": "  ", "street2": "", "city": " Berlin ", "country": "", "state": None}
    )
    assert customer["billing_address"] == {
        "street": None,
        "street2": None,
        "city": "Berlin",
        "postal_code": None,
        "state": None,
        "country": None,
    }


@pytest.mark.parametrize(
    "address", [{}, {"street": "", "city": "  "}, dict.fromkeys(FULL_ADDRESS, ""), dict.fromkeys(FULL_ADDRESS)]
)
def test_an_address_with_every_field_empty_is_null(
    client: httpx.Client, org: OrgContext, db: Db, address: dict[str, Any]
) -> None:
    customer = create_customer(client, org, billing_address=address, shipping_address=address)

    assert customer["billing_address"] is None
    assert customer["shipping_address"] is None
    rows = db.fetch("SELECT billing_address_json, shipping_address_json FROM customer WHERE org_id = :o", o=org.id)
    assert rows == [(None, None)]


@pytest.mark.parametrize("address", ["Musterstraße 1", ["Musterstraße 1"], 1])
def test_an_address_that_is_not_an_object_is_422(client: httpx.Client, org: OrgContext, address: Any) -> None:
    assert_rejected(post_customer(client, org, billing_address=address), "billing_address")


def test_an_address_field_over_500_characters_is_422(client: httpx.Client, org: OrgContext) -> None:
    assert_rejected(post_customer(client, org, billing_address={"street": "s" * 501}), "billing_address.street")


# --- metadata ---------------------------------------------------------------------------------


def test_metadata_keeps_any_json_values(client: httpx.Client, org: OrgContext) -> None:
    metadata = {"discount_group": "A", "credit_limit": 5000, "vip": True, "tags": ["x", 1], "nested": {"a": None}}
    assert create_customer(client, org, metadata=metadata)["metadata"] == metadata


@pytest.mark.parametrize("metadata", [[], ["a"], "text", 1, True])
def test_metadata_that_is_not_an_object_is_422(client: httpx.Client, org: OrgContext, metadata: Any) -> None:
    assert_rejected(post_customer(client, org, metadata=metadata), "metadata")


def test_metadata_up_to_64_kib_is_accepted_and_more_is_422(client: httpx.Client, org: OrgContext) -> None:
    fits = {"k": "v" * (64 * 1024 - 16)}
    too_big = {"k": "v" * (64 * 1024 + 1)}
    assert create_customer(client, org, metadata=fits)["metadata"] == fits
    assert_rejected(post_customer(client, org, metadata=too_big, erp_customer_number=None), "metadata")


def test_metadata_null_or_empty_is_an_empty_object(client: httpx.Client, org: OrgContext) -> None:
    assert create_customer(client, org, metadata=None)["metadata"] == {}
    assert create_customer(client, org, metadata={}, erp_customer_number=None)["metadata"] == {}


# --- the body as a whole ----------------------------------------------------------------------


@pytest.mark.parametrize("field", ["id", "org_id", "created_at", "updated_at", "colour"])
def test_unknown_or_server_owned_fields_on_create_are_422(client: httpx.Client, org: OrgContext, field: str) -> None:
    assert_rejected(post_customer(client, org, **{field: "x"}), field)


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 422),
        (b"[]", "application/json", 422),
        (b"\xff\xfe{}", "application/json", 422),
        (b"name=x", "application/x-www-form-urlencoded", 415),
    ],
)
def test_a_body_that_is_not_a_json_object_is_rejected(
    client: httpx.Client, org: OrgContext, content: bytes, content_type: str, status: int
) -> None:
    response = client.post(
        "/api/v1/customers", content=content, headers={**org.headers(), "Content-Type": content_type}
    )
    assert_error(response, status, "VALIDATION_ERROR" if status == 422 else "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": "Nul\x00GmbH"},
        {"billing_address": {"street": "a\x00b"}},
        {"metadata": {"k": "v\x00"}},
        {"metadata": {"k\x00": "v"}},
        {"metadata": {"k": ["\x00"]}},
        {"contacts": [{"email": "a@b.de", "name": "\x00"}]},
    ],
    ids=["name", "address", "metadata-value", "metadata-key", "metadata-nested", "contact-name"],
)
def test_text_with_nul_characters_is_422_not_500(
    client: httpx.Client, org: OrgContext, overrides: dict[str, Any]
) -> None:
    error = assert_error(post_customer(client, org, **overrides), 422, "VALIDATION_ERROR")
    assert all(str(field).split(".")[0] in overrides for field in error_fields(error))
