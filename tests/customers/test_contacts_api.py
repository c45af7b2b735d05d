"""Contacts (API.md §5): list, create, update, delete, and one primary per customer — also under load."""

import uuid
from typing import Any

import httpx
import pytest

from customer_master.auth.models import Role
from tests.conftest import Db, OrgContext, assert_error, create_customer
from tests.customers.helpers import add_contact, error_fields, get_customer, run_together, timestamp

CONTACT_KEYS = {"id", "customer_id", "email", "name", "is_primary", "created_at", "updated_at"}


def contacts_path(customer_id: str, contact_id: str | None = None) -> str:
    path = f"/api/v1/customers/{customer_id}/contacts"
    return f"{path}/{contact_id}" if contact_id else path


def list_contacts(client: httpx.Client, org: OrgContext, customer_id: str) -> list[dict[str, Any]]:
    response = client.get(contacts_path(customer_id), headers=org.headers(Role.VIEWER))
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"items"}
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def patch_contact(
    client: httpx.Client, org: OrgContext, customer_id: str, contact_id: str, body: Any
) -> httpx.Response:
    return client.patch(contacts_path(customer_id, contact_id), json=body, headers=org.headers())


def primaries_in_db(db: Db, customer_id: str) -> list[uuid.UUID]:
    rows = db.fetch("SELECT id FROM customer_contact WHERE customer_id = :id AND is_primary", id=uuid.UUID(customer_id))
    return [row.id for row in rows]


# --- list and create --------------------------------------------------------------------------


def test_a_new_customer_has_no_contacts(client: httpx.Client, org: OrgContext) -> None:
    assert list_contacts(client, org, create_customer(client, org)["id"]) == []


def test_create_contact_trims_and_lower_cases_the_email(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)

    response = client.post(
        contacts_path(customer["id"]),
        json={"email": "  Max.Mustermann@Muster.DE ", "name": " Max Mustermann "},
        headers=org.headers(Role.INTEGRATOR),
    )

    assert response.status_code == 201, response.text
    contact = response.json()
    assert set(contact) == CONTACT_KEYS
    assert contact["email"] == "max.mustermann@muster.de"
    assert contact["name"] == "Max Mustermann"
    assert contact["is_primary"] is False
    assert contact["customer_id"] == customer["id"]
    assert list_contacts(client, org, customer["id"]) == [contact]


def test_contacts_are_listed_primary_first_then_by_email(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    for email in ("d@x.de", "a@x.de", "c@x.de"):
        add_contact(client, org, customer["id"], email=email)
    add_contact(client, org, customer["id"], email="b@x.de", is_primary=True)

    emails = [c["email"] for c in list_contacts(client, org, customer["id"])]

    assert emails == ["b@x.de", "a@x.de", "c@x.de", "d@x.de"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "no-at-sign"}, "email"),
        ({"email": ""}, "email"),
        ({"email": "a@b"}, "email"),
        ({"email": None}, "email"),
        ({"name": "Max"}, "email"),
        ({"email": "a@b.de", "is_primary": "maybe"}, "is_primary"),
        ({"email": "a@b.de", "name": "n" * 501}, "name"),
        ({"email": "a@b.de", "phone": "123"}, "phone"),
    ],
)
def test_bad_contact_bodies_are_422(client: httpx.Client, org: OrgContext, body: dict[str, Any], field: str) -> None:
    customer = create_customer(client, org)

    error = assert_error(
        client.post(contacts_path(customer["id"]), json=body, headers=org.headers()), 422, "VALIDATION_ERROR"
    )

    assert error_fields(error) == {field}
    assert list_contacts(client, org, customer["id"]) == []


@pytest.mark.parametrize("second", ["einkauf@muster.de", "EINKAUF@Muster.De", "  Einkauf@muster.de  "])
def test_the_same_email_twice_on_one_customer_is_409(client: httpx.Client, org: OrgContext, second: str) -> None:
    customer = create_customer(client, org)
    first = add_contact(client, org, customer["id"], email="einkauf@muster.de")

    response = client.post(contacts_path(customer["id"]), json={"email": second}, headers=org.headers())

    error = assert_error(response, 409, "CONFLICT")
    assert error["details"] == {"field": "email", "existing_id": first["id"]}
    assert len(list_contacts(client, org, customer["id"])) == 1


def test_the_same_email_on_two_customers_is_allowed(client: httpx.Client, org: OrgContext) -> None:
    one = create_customer(client, org, erp_customer_number="1")
    two = create_customer(client, org, erp_customer_number="2")

    add_contact(client, org, one["id"], email="zentrale@konzern.de", is_primary=True)
    add_contact(client, org, two["id"], email="Zentrale@Konzern.de", is_primary=True)

    assert [c["email"] for c in list_contacts(client, org, two["id"])] == ["zentrale@konzern.de"]


def test_a_new_primary_unmarks_the_previous_one(client: httpx.Client, org: OrgContext, db: Db) -> None:
    customer = create_customer(client, org, contacts=[{"email": "old@x.de", "is_primary": True}])

    new = add_contact(client, org, customer["id"], email="new@x.de", is_primary=True)

    contacts = list_contacts(client, org, customer["id"])
    assert [(c["email"], c["is_primary"]) for c in contacts] == [("new@x.de", True), ("old@x.de", False)]
    assert primaries_in_db(db, customer["id"]) == [uuid.UUID(new["id"])]


def test_a_non_primary_contact_leaves_the_primary_alone(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, contacts=[{"email": "p@x.de", "is_primary": True}])
    add_contact(client, org, customer["id"], email="q@x.de", is_primary=False)

    assert [c["is_primary"] for c in list_contacts(client, org, customer["id"])] == [True, False]


def test_contacts_of_an_unknown_or_foreign_customer_are_404(
    client: httpx.Client, org: OrgContext, other_org: OrgContext, db: Db
) -> None:
    foreign = create_customer(client, other_org)
    for customer_id in (foreign["id"], str(uuid.uuid4())):
        assert_error(client.get(contacts_path(customer_id), headers=org.headers()), 404, "NOT_FOUND")
        response = client.post(contacts_path(customer_id), json={"email": "a@b.de"}, headers=org.headers())
        assert_error(response, 404, "NOT_FOUND")
    assert db.fetch("SELECT id FROM customer_contact WHERE customer_id = :id", id=uuid.UUID(foreign["id"])) == []


def test_only_writers_may_change_contacts(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, contacts=[{"email": "a@b.de"}])
    contact_id = customer["contacts"][0]["id"]
    for role in (Role.VIEWER, Role.OPS):
        headers = org.headers(role)
        assert_error(
            client.post(contacts_path(customer["id"]), json={"email": "x@b.de"}, headers=headers), 403, "FORBIDDEN"
        )
        response = client.patch(contacts_path(customer["id"], contact_id), json={"name": "x"}, headers=headers)
        assert_error(response, 403, "FORBIDDEN")
        assert_error(client.delete(contacts_path(customer["id"], contact_id), headers=headers), 403, "FORBIDDEN")
    assert len(list_contacts(client, org, customer["id"])) == 1


# --- update -----------------------------------------------------------------------------------


def test_patch_contact_changes_only_what_it_names(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    contact = add_contact(client, org, customer["id"], email="a@x.de", name="Anna")

    response = patch_contact(client, org, customer["id"], contact["id"], {"email": " ANNA@X.de "})

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["email"] == "anna@x.de"
    assert result["name"] == "Anna"
    assert result["is_primary"] is False
    assert result["created_at"] == contact["created_at"]
    assert timestamp(result["updated_at"]) > timestamp(contact["updated_at"])
    assert list_contacts(client, org, customer["id"]) == [result]


def test_patch_contact_name_to_null_clears_it(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    contact = add_contact(client, org, customer["id"], email="a@x.de", name="Anna")

    response = patch_contact(client, org, customer["id"], contact["id"], {"name": None})

    assert response.status_code == 200
    assert response.json()["name"] is None


def test_making_a_contact_primary_unmarks_the_previous_one(client: httpx.Client, org: OrgContext, db: Db) -> None:
    customer = create_customer(
        client, org, contacts=[{"email": "a@x.de", "is_primary": True}, {"email": "b@x.de"}, {"email": "c@x.de"}]
    )
    c_id = next(c["id"] for c in customer["contacts"] if c["email"] == "c@x.de")

    response = patch_contact(client, org, customer["id"], c_id, {"is_primary": True})

    assert response.status_code == 200
    assert response.json()["is_primary"] is True
    assert primaries_in_db(db, customer["id"]) == [uuid.UUID(c_id)]
    assert [c["email"] for c in list_contacts(client, org, customer["id"])] == ["c@x.de", "a@x.de", "b@x.de"]


def test_the_primary_can_be_unmarked_leaving_none(client: httpx.Client, org: OrgContext, db: Db) -> None:
    customer = create_customer(client, org, contacts=[{"email": "a@x.de", "is_primary": True}])
    contact_id = customer["contacts"][0]["id"]

    assert patch_contact(client, org, customer["id"], contact_id, {"is_primary": False}).status_code == 200
    assert primaries_in_db(db, customer["id"]) == []
    again = patch_contact(client, org, customer["id"], contact_id, {"is_primary": True})
    assert again.status_code == 200
    assert primaries_in_db(db, customer["id"]) == [uuid.UUID(contact_id)]


def test_patch_to_an_email_the_customer_has_is_409(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, contacts=[{"email": "a@x.de"}, {"email": "b@x.de"}])
    a_id, b_id = (c["id"] for c in customer["contacts"])

    error = assert_error(patch_contact(client, org, customer["id"], b_id, {"email": "A@X.DE"}), 409, "CONFLICT")

    assert error["details"] == {"field": "email", "existing_id": a_id}
    own = patch_contact(client, org, customer["id"], a_id, {"email": "A@x.de", "name": "Same"})
    assert own.status_code == 200, "re-sending its own e-mail is no conflict"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": None}, "email"),
        ({"is_primary": None}, "is_primary"),
        ({"email": "broken"}, "email"),
        ({"customer_id": str(uuid.uuid4())}, "customer_id"),
        ({"id": str(uuid.uuid4())}, "id"),
    ],
)
def test_bad_contact_patches_are_422(client: httpx.Client, org: OrgContext, body: dict[str, Any], field: str) -> None:
    customer = create_customer(client, org, contacts=[{"email": "a@x.de", "is_primary": True}])
    contact = customer["contacts"][0]

    error = assert_error(patch_contact(client, org, customer["id"], contact["id"], body), 422, "VALIDATION_ERROR")

    assert error_fields(error) == {field}
    assert list_contacts(client, org, customer["id"]) == [contact]


def test_a_contact_is_only_reachable_through_its_own_customer(
    client: httpx.Client, org: OrgContext, other_org: OrgContext
) -> None:
    owner = create_customer(client, org, erp_customer_number="1", contacts=[{"email": "a@x.de"}])
    other = create_customer(client, org, erp_customer_number="2")
    contact_id = owner["contacts"][0]["id"]

    assert_error(patch_contact(client, org, other["id"], contact_id, {"name": "x"}), 404, "NOT_FOUND")
    assert_error(client.delete(contacts_path(other["id"], contact_id), headers=org.headers()), 404, "NOT_FOUND")
    assert_error(patch_contact(client, org, owner["id"], str(uuid.uuid4()), {"name": "x"}), 404, "NOT_FOUND")
    assert_error(patch_contact(client, other_org, owner["id"], contact_id, {"name": "x"}), 404, "NOT_FOUND")
    assert list_contacts(client, org, owner["id"]) == owner["contacts"]


# --- delete -----------------------------------------------------------------------------------


def test_delete_contact_leaves_the_customer_untouched(client: httpx.Client, org: OrgContext, db: Db) -> None:
    customer = create_customer(client, org, contacts=[{"email": "a@x.de", "is_primary": True}, {"email": "b@x.de"}])
    a_id, b_id = (c["id"] for c in customer["contacts"])

    response = client.delete(contacts_path(customer["id"], a_id), headers=org.headers(Role.INTEGRATOR))

    assert response.status_code == 204
    assert response.content == b""
    after = get_customer(client, org, customer["id"]).json()
    assert after["contacts"] == [c for c in customer["contacts"] if c["id"] == b_id]
    assert {**after, "contacts": customer["contacts"]} == customer, "the customer row itself is unchanged"
    assert db.fetch("SELECT id FROM customer_contact WHERE id = :id", id=uuid.UUID(a_id)) == []
    assert_error(client.delete(contacts_path(customer["id"], a_id), headers=org.headers()), 404, "NOT_FOUND")


def test_a_deleted_contacts_email_can_be_added_again(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, contacts=[{"email": "a@x.de"}])
    client.delete(
        contacts_path(customer["id"], customer["contacts"][0]["id"]), headers=org.headers()
    ).raise_for_status()

    assert add_contact(client, org, customer["id"], email="A@x.de")["email"] == "a@x.de"


# --- one primary, also under concurrency ------------------------------------------------------


def test_concurrent_make_primary_patches_leave_exactly_one_primary(
    client: httpx.Client, org: OrgContext, db: Db
) -> None:
    contacts = [{"email": f"c{index:02}@x.de", "is_primary": index == 0} for index in range(20)]
    customer = create_customer(client, org, contacts=contacts)
    contact_ids = [c["id"] for c in customer["contacts"]]
    headers = org.headers()

    def make_primary(http: httpx.Client, index: int) -> int:
        response = http.patch(
            contacts_path(customer["id"], contact_ids[index]), json={"is_primary": True}, headers=headers
        )
        return response.status_code

    statuses = run_together(str(client.base_url), 20, make_primary)

    assert statuses == [200] * 20
    primaries = primaries_in_db(db, customer["id"])
    assert len(primaries) == 1
    assert str(primaries[0]) in contact_ids
    assert [c["is_primary"] for c in list_contacts(client, org, customer["id"])].count(True) == 1


def test_concurrent_primary_creates_leave_exactly_one_primary(client: httpx.Client, org: OrgContext, db: Db) -> None:
    customer = create_customer(client, org, contacts=[{"email": "old@x.de", "is_primary": True}])
    headers = org.headers()

    def create_primary(http: httpx.Client, index: int) -> int:
        body = {"email": f"new{index:02}@x.de", "is_primary": True}
        return http.post(contacts_path(customer["id"]), json=body, headers=headers).status_code

    statuses = run_together(str(client.base_url), 20, create_primary)

    assert statuses == [201] * 20
    assert len(list_contacts(client, org, customer["id"])) == 21
    primaries = primaries_in_db(db, customer["id"])
    assert len(primaries) == 1
    email = db.fetch("SELECT email FROM customer_contact WHERE id = :id", id=primaries[0])[0].email
    assert email.startswith("new")


def test_concurrent_creates_of_one_email_create_it_once(client: httpx.Client, org: OrgContext, db: Db) -> None:
    customer = create_customer(client, org)
    headers = org.headers()

    def create(http: httpx.Client, index: int) -> int:
        body = {"email": "Same@X.de" if index % 2 else "same@x.de", "is_primary": index % 3 == 0}
        return http.post(contacts_path(customer["id"]), json=body, headers=headers).status_code

    statuses = run_together(str(client.base_url), 12, create)

    assert sorted(statuses) == [201] + [409] * 11
    assert len(db.fetch("SELECT id FROM customer_contact WHERE customer_id = :id", id=uuid.UUID(customer["id"]))) == 1
