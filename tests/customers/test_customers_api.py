"""Customers (API.md §4): create, read, list and search, delete — happy paths and the 4xx answers."""

import base64
import uuid
from typing import Any

import httpx
import pytest

from customer_master.auth.models import Role
from tests.conftest import Db, OrgContext, assert_error, create_customer, customer_body
from tests.customers.helpers import add_contact, error_fields, get_customer

LIST_ITEM_KEYS = {
    "id",
    "name",
    "erp_customer_number",
    "default_currency",
    "default_language",
    "billing_address",
    "contact_count",
}


def list_customers(client: httpx.Client, org: OrgContext, **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/customers", params=params, headers=org.headers(Role.VIEWER))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def forged_cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def names_found(client: httpx.Client, org: OrgContext, **params: Any) -> set[str]:
    return {item["name"] for item in list_customers(client, org, limit=200, **params)["items"]}


# --- create -----------------------------------------------------------------------------------


def test_create_returns_the_whole_customer(client: httpx.Client, org: OrgContext) -> None:
    response = client.post("/api/v1/customers", json=customer_body(), headers=org.headers(Role.INTEGRATOR))

    assert response.status_code == 201, response.text
    customer = response.json()
    assert uuid.UUID(customer["id"])
    assert customer["org_id"] == str(org.id)
    assert customer["name"] == "Muster GmbH"
    assert customer["erp_customer_number"] == "4711"
    assert customer["default_currency"] == "EUR"
    assert customer["default_language"] == "de-DE"
    assert customer["billing_address"] == {
        "street": "Musterstraße 1",
        "street2": None,
        "city": "München",
        "postal_code": "80331",
        "state": None,
        "country": "DE",
    }
    assert customer["shipping_address"] is None
    assert customer["metadata"] == {"discount_group": "A"}
    assert customer["contacts"] == []
    assert customer["created_at"] == customer["updated_at"]
    assert customer["created_at"].endswith(("Z", "+00:00"))


def test_create_with_only_the_required_fields(client: httpx.Client, org: OrgContext) -> None:
    body = {"name": "Minimal AG", "default_currency": "CHF", "default_language": "fr-CH"}
    response = client.post("/api/v1/customers", json=body, headers=org.headers())

    assert response.status_code == 201, response.text
    customer = response.json()
    assert customer["erp_customer_number"] is None
    assert customer["billing_address"] is None
    assert customer["shipping_address"] is None
    assert customer["metadata"] == {}


def test_create_with_contacts_in_one_go(client: httpx.Client, org: OrgContext) -> None:
    contacts = [
        {"email": "zoe@muster.de", "name": "Zoe"},
        {"email": " Einkauf@Muster.DE ", "name": "Einkauf", "is_primary": False},
        {"email": "chef@muster.de", "is_primary": True},
    ]
    customer = create_customer(client, org, contacts=contacts)

    assert [c["email"] for c in customer["contacts"]] == ["chef@muster.de", "einkauf@muster.de", "zoe@muster.de"]
    assert [c["is_primary"] for c in customer["contacts"]] == [True, False, False]
    assert {c["customer_id"] for c in customer["contacts"]} == {customer["id"]}
    assert customer["contacts"][0]["name"] is None


@pytest.mark.parametrize(
    "contacts",
    [
        [{"email": "a@muster.de"}, {"email": "A@Muster.de "}],
        [{"email": "a@muster.de", "is_primary": True}, {"email": "b@muster.de", "is_primary": True}],
        [{"email": "not an e-mail"}],
        [{"email": "a@muster.de", "role": "buyer"}],
    ],
    ids=["same-email-twice", "two-primaries", "bad-email", "unknown-key"],
)
def test_create_with_bad_contacts_is_422_and_creates_nothing(
    client: httpx.Client, org: OrgContext, db: Db, contacts: list[dict[str, Any]]
) -> None:
    response = client.post("/api/v1/customers", json=customer_body(contacts=contacts), headers=org.headers())

    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert all(str(field).startswith("contacts") for field in error_fields(error))
    assert db.fetch("SELECT id FROM customer WHERE org_id = :org_id", org_id=org.id) == []


def test_duplicate_erp_number_is_409_naming_the_holder(client: httpx.Client, org: OrgContext, db: Db) -> None:
    first = create_customer(client, org, erp_customer_number="K-100")

    response = client.post(
        "/api/v1/customers", json=customer_body(name="Other", erp_customer_number=" K-100 "), headers=org.headers()
    )

    error = assert_error(response, 409, "CONFLICT")
    assert error["details"] == {"field": "erp_customer_number", "existing_id": first["id"]}
    assert len(db.fetch("SELECT id FROM customer WHERE org_id = :org_id", org_id=org.id)) == 1


def test_erp_numbers_are_compared_exactly_and_per_org(
    client: httpx.Client, org: OrgContext, other_org: OrgContext
) -> None:
    create_customer(client, org, erp_customer_number="ab-1")
    create_customer(client, org, erp_customer_number="AB-1")
    create_customer(client, other_org, erp_customer_number="ab-1")
    create_customer(client, org, erp_customer_number=None)
    create_customer(client, org, erp_customer_number=None)


def test_roles_that_may_not_write_get_403(client: httpx.Client, org: OrgContext) -> None:
    for role in (Role.VIEWER, Role.OPS):
        response = client.post("/api/v1/customers", json=customer_body(), headers=org.headers(role))
        assert_error(response, 403, "FORBIDDEN")


def test_no_token_is_401(client: httpx.Client) -> None:
    assert_error(client.get("/api/v1/customers"), 401, "AUTH_REQUIRED")
    assert_error(client.post("/api/v1/customers", json=customer_body()), 401, "AUTH_REQUIRED")


# --- get --------------------------------------------------------------------------------------


def test_get_returns_contacts_primary_first_then_by_email_with_an_etag(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    for email in ("m@muster.de", "b@muster.de", "x@muster.de"):
        add_contact(client, org, customer["id"], email=email)
    add_contact(client, org, customer["id"], email="p@muster.de", is_primary=True)

    response = client.get(f"/api/v1/customers/{customer['id']}", headers=org.headers(Role.VIEWER))

    assert response.status_code == 200
    body = response.json()
    assert [c["email"] for c in body["contacts"]] == ["p@muster.de", "b@muster.de", "m@muster.de", "x@muster.de"]
    assert body["contacts"][0]["is_primary"] is True
    etag = response.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert get_customer(client, org, customer["id"]).headers["etag"] == etag


def test_etag_changes_when_a_contact_is_added_changed_or_deleted(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    before = get_customer(client, org, customer["id"]).headers["etag"]

    contact = add_contact(client, org, customer["id"], email="a@muster.de")
    after_add = get_customer(client, org, customer["id"]).headers["etag"]
    client.patch(
        f"/api/v1/customers/{customer['id']}/contacts/{contact['id']}", json={"name": "A"}, headers=org.headers()
    ).raise_for_status()
    after_patch = get_customer(client, org, customer["id"]).headers["etag"]
    client.delete(f"/api/v1/customers/{customer['id']}/contacts/{contact['id']}", headers=org.headers())
    after_delete = get_customer(client, org, customer["id"]).headers["etag"]

    assert len({before, after_add, after_patch}) == 3
    assert after_delete not in {after_add, after_patch}


def test_get_of_an_unknown_or_foreign_customer_is_404(
    client: httpx.Client, org: OrgContext, other_org: OrgContext
) -> None:
    foreign = create_customer(client, other_org)
    for customer_id in (foreign["id"], str(uuid.uuid4())):
        response = client.get(f"/api/v1/customers/{customer_id}", headers=org.headers())
        assert_error(response, 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/api/v1/customers/not-a-uuid", "id"),
        ("PATCH", "/api/v1/customers/123", "id"),
        ("DELETE", "/api/v1/customers/xyz", "id"),
        ("GET", "/api/v1/customers/nope/contacts", "id"),
        ("PATCH", "/api/v1/customers/{customer}/contacts/nope", "contact_id"),
        ("DELETE", "/api/v1/customers/{customer}/contacts/nope", "contact_id"),
    ],
)
def test_a_path_id_that_is_not_a_uuid_is_422_naming_it(
    client: httpx.Client, org: OrgContext, method: str, path: str, field: str
) -> None:
    customer = create_customer(client, org)
    response = client.request(method, path.format(customer=customer["id"]), json={"name": "x"}, headers=org.headers())

    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert field in error_fields(error)


# --- list and search --------------------------------------------------------------------------


def test_list_items_have_the_list_shape_and_contact_count(client: httpx.Client, org: OrgContext) -> None:
    with_contacts = create_customer(
        client, org, name="Beta", erp_customer_number="1", contacts=[{"email": "a@b.de"}, {"email": "c@b.de"}]
    )
    without = create_customer(client, org, name="Alpha", erp_customer_number="2")

    page = list_customers(client, org)

    assert page["next_cursor"] is None
    assert [item["id"] for item in page["items"]] == [without["id"], with_contacts["id"]]
    assert all(set(item) == LIST_ITEM_KEYS for item in page["items"])
    assert page["items"][0]["contact_count"] == 0
    assert page["items"][1]["contact_count"] == 2
    assert page["items"][1]["billing_address"] == with_contacts["billing_address"]


def test_list_is_ordered_by_name_case_insensitively_then_by_id(client: httpx.Client, org: OrgContext) -> None:
    names = ["delta", "Alpha", "charlie", "Bravo", "alpha", "ALPHA", "bravo"]
    ids_by_name: dict[str, list[str]] = {}
    for name in names:
        ids_by_name.setdefault(name.lower(), []).append(
            create_customer(client, org, name=name, erp_customer_number=None)["id"]
        )

    items = list_customers(client, org)["items"]

    expected = [i for name in sorted(ids_by_name) for i in sorted(ids_by_name[name], key=uuid.UUID)]
    assert [item["id"] for item in items] == expected


def test_list_never_shows_another_orgs_customers(client: httpx.Client, org: OrgContext, other_org: OrgContext) -> None:
    create_customer(client, other_org, name="Foreign GmbH")
    assert list_customers(client, org)["items"] == []
    assert list_customers(client, org, q="Foreign")["items"] == []


def test_q_matches_the_name_case_and_accent_insensitively(client: httpx.Client, org: OrgContext) -> None:
    for name in ("Müller GmbH", "Bäckerei Groß", "Muller & Söhne", "Schulz KG"):
        create_customer(client, org, name=name, erp_customer_number=None)

    assert names_found(client, org, q="muller") == {"Müller GmbH", "Muller & Söhne"}
    assert names_found(client, org, q="MÜLLER") == {"Müller GmbH", "Muller & Söhne"}
    assert names_found(client, org, q="ller g") == {"Müller GmbH"}
    assert names_found(client, org, q="backerei") == {"Bäckerei Groß"}
    assert names_found(client, org, q="SÖHNE") == {"Muller & Söhne"}
    assert names_found(client, org, q="  schulz ") == {"Schulz KG"}
    assert names_found(client, org, q="nobody") == set()


def test_q_treats_like_wildcards_literally(client: httpx.Client, org: OrgContext) -> None:
    for name in ("50% Rabatt GmbH", "500 Rabatt GmbH", "A_B Handel", "AXB Handel", "Back\\slash AG"):
        create_customer(client, org, name=name, erp_customer_number=None)

    assert names_found(client, org, q="50%") == {"50% Rabatt GmbH"}
    assert names_found(client, org, q="a_b") == {"A_B Handel"}
    assert names_found(client, org, q="k\\s") == {"Back\\slash AG"}


def test_q_matches_a_prefix_of_the_erp_number_case_insensitively(client: httpx.Client, org: OrgContext) -> None:
    create_customer(client, org, name="Erste", erp_customer_number="AB-1234")
    create_customer(client, org, name="Zweite", erp_customer_number="ab-9")
    create_customer(client, org, name="Dritte", erp_customer_number="X-AB-1")

    assert names_found(client, org, q="ab-") == {"Erste", "Zweite"}
    assert names_found(client, org, q="AB-12") == {"Erste"}
    assert names_found(client, org, q="1234") == set(), "the ERP number matches by prefix only"


def test_q_finds_names_and_erp_numbers_together(client: httpx.Client, org: OrgContext, other_org: OrgContext) -> None:
    """One term, both readings: a name that contains it, a number that starts with it (whether any number of
    the org starts with the term is asked once per search; another org's numbers do not count)."""
    create_customer(client, org, name="Muller Bau", erp_customer_number="7-1")
    create_customer(client, org, name="Zeta", erp_customer_number="MULLER-7")
    create_customer(client, org, name="Omega", erp_customer_number="X-MULLER")
    create_customer(client, other_org, name="Fremd", erp_customer_number="BAU-1")

    assert names_found(client, org, q="muller") == {"Muller Bau", "Zeta"}
    assert names_found(client, org, q="mull") == {"Muller Bau", "Zeta"}
    assert names_found(client, org, q="bau") == {"Muller Bau"}


def test_erp_number_filter_is_exact(client: httpx.Client, org: OrgContext) -> None:
    create_customer(client, org, name="Exact", erp_customer_number="4711")
    create_customer(client, org, name="Longer", erp_customer_number="47110")
    create_customer(client, org, name="Lower", erp_customer_number="k-1")
    create_customer(client, org, name="Upper", erp_customer_number="K-1")

    assert names_found(client, org, erp_number="4711") == {"Exact"}
    assert names_found(client, org, erp_number="471") == set()
    assert names_found(client, org, erp_number="K-1") == {"Upper"}


def test_email_filter_is_case_insensitive(client: httpx.Client, org: OrgContext) -> None:
    create_customer(client, org, name="Has", erp_customer_number="1", contacts=[{"email": "einkauf@muster.de"}])
    create_customer(client, org, name="Also", erp_customer_number="2", contacts=[{"email": "Einkauf@Muster.de"}])
    create_customer(client, org, name="Other", erp_customer_number="3", contacts=[{"email": "verkauf@muster.de"}])

    assert names_found(client, org, email="EINKAUF@muster.DE") == {"Has", "Also"}
    assert names_found(client, org, email="einkauf@") == set(), "the e-mail filter is not a substring search"


def test_filters_combine_with_and(client: httpx.Client, org: OrgContext) -> None:
    create_customer(client, org, name="Muster Nord", erp_customer_number="N-1", contacts=[{"email": "a@nord.de"}])
    create_customer(client, org, name="Muster Süd", erp_customer_number="S-1", contacts=[{"email": "a@nord.de"}])
    create_customer(client, org, name="Anders", erp_customer_number="N-2", contacts=[{"email": "a@nord.de"}])

    assert names_found(client, org, q="muster", email="a@nord.de") == {"Muster Nord", "Muster Süd"}
    assert names_found(client, org, q="muster", erp_number="N-1") == {"Muster Nord"}
    assert names_found(client, org, q="n-", email="a@nord.de") == {"Muster Nord", "Anders"}
    assert names_found(client, org, q="sud", erp_number="N-1") == set()
    assert names_found(client, org, q="muster", erp_number="S-1", email="b@nord.de") == set()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": forged_cursor(b"not json")}, "cursor"),
        ({"cursor": forged_cursor(b'["a", 5]')}, "cursor"),
        ({"cursor": forged_cursor(b'{"a": 1}')}, "cursor"),
        ({"cursor": forged_cursor(b'["a", "not-a-uuid"]')}, "cursor"),
        ({"cursor": forged_cursor(b'["a", "b", "c"]')}, "cursor"),
        ({"cursor": forged_cursor(b'[5, "3f2c0f9e-5a7c-4f3e-9a59-55d3b7f0c001"]')}, "cursor"),
        ({"cursor": forged_cursor(b'["a\\u0000", "3f2c0f9e-5a7c-4f3e-9a59-55d3b7f0c001"]')}, "cursor"),
        ({"cursor": forged_cursor(b"\xff\xfe")}, "cursor"),
    ],
)
def test_bad_list_parameters_are_422_naming_the_parameter(
    client: httpx.Client, org: OrgContext, params: dict[str, Any], field: str
) -> None:
    response = client.get("/api/v1/customers", params=params, headers=org.headers())

    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error_fields(error) == {field}


def test_limit_bounds_are_inclusive(client: httpx.Client, org: OrgContext) -> None:
    for index in range(3):
        create_customer(client, org, name=f"Kunde {index}", erp_customer_number=None)

    one = list_customers(client, org, limit=1)
    assert len(one["items"]) == 1
    assert one["next_cursor"]
    assert len(list_customers(client, org, limit=200)["items"]) == 3
    assert len(list_customers(client, org)["items"]) == 3


def test_query_text_with_nul_characters_is_422_not_500(client: httpx.Client, org: OrgContext) -> None:
    for params in ({"q": "a\x00b"}, {"email": "a\x00@b.de"}, {"erp_number": "4\x00"}):
        response = client.get("/api/v1/customers", params=params, headers=org.headers())
        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert error_fields(error) == set(params)


# --- delete -----------------------------------------------------------------------------------


def test_delete_removes_the_customer_and_its_contacts(client: httpx.Client, org: OrgContext, db: Db) -> None:
    customer = create_customer(client, org, contacts=[{"email": "a@muster.de", "is_primary": True}])
    add_contact(client, org, customer["id"], email="b@muster.de")
    kept = create_customer(client, org, erp_customer_number="other", contacts=[{"email": "a@muster.de"}])

    response = client.delete(f"/api/v1/customers/{customer['id']}", headers=org.headers(Role.ADMIN))

    assert response.status_code == 204
    assert response.content == b""
    assert db.fetch("SELECT id FROM customer WHERE id = :id", id=uuid.UUID(customer["id"])) == []
    assert db.fetch("SELECT id FROM customer_contact WHERE customer_id = :id", id=uuid.UUID(customer["id"])) == []
    assert len(db.fetch("SELECT id FROM customer_contact WHERE customer_id = :id", id=uuid.UUID(kept["id"]))) == 1
    assert_error(client.get(f"/api/v1/customers/{customer['id']}", headers=org.headers()), 404, "NOT_FOUND")
    assert_error(client.delete(f"/api/v1/customers/{customer['id']}", headers=org.headers()), 404, "NOT_FOUND")


def test_only_an_admin_may_delete_a_customer(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    for role in (Role.VIEWER, Role.OPS, Role.INTEGRATOR):
        assert_error(client.delete(f"/api/v1/customers/{customer['id']}", headers=org.headers(role)), 403, "FORBIDDEN")
    get_customer(client, org, customer["id"])


def test_deleting_another_orgs_customer_is_404(client: httpx.Client, org: OrgContext, other_org: OrgContext) -> None:
    foreign = create_customer(client, other_org)
    assert_error(client.delete(f"/api/v1/customers/{foreign['id']}", headers=org.headers()), 404, "NOT_FOUND")
    get_customer(client, other_org, foreign["id"])
