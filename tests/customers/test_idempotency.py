"""`Idempotency-Key` on the two creating endpoints (API.md §1)."""

import uuid
from typing import Any

import httpx

from tests.conftest import Db, OrgContext, assert_error, create_customer, customer_body
from tests.customers.helpers import error_fields, run_together


def post(client: httpx.Client, org: OrgContext, path: str, body: dict[str, Any], key: str) -> httpx.Response:
    return client.post(path, json=body, headers={**org.headers(), "Idempotency-Key": key})


def customer_count(db: Db, org: OrgContext) -> int:
    return len(db.fetch("SELECT id FROM customer WHERE org_id = :org_id", org_id=org.id))


def contact_count(db: Db, customer_id: str) -> int:
    return len(db.fetch("SELECT id FROM customer_contact WHERE customer_id = :id", id=uuid.UUID(customer_id)))


def test_the_same_key_and_body_replays_the_first_response(client: httpx.Client, org: OrgContext, db: Db) -> None:
    body = customer_body(contacts=[{"email": "a@muster.de", "is_primary": True}])
    first = post(client, org, "/api/v1/customers", body, "order-42")
    assert first.status_code == 201, first.text

    again = post(client, org, "/api/v1/customers", body, "order-42")
    reordered = client.post(
        "/api/v1/customers",
        content=httpx.Request("POST", "/", json=dict(reversed(body.items()))).content,
        headers={**org.headers(), "Idempotency-Key": "order-42", "Content-Type": "application/json"},
    )

    for replay in (again, reordered):
        assert replay.status_code == 201
        assert replay.json() == first.json()
    assert customer_count(db, org) == 1


def test_a_replay_survives_later_changes_to_the_customer(client: httpx.Client, org: OrgContext, db: Db) -> None:
    first = post(client, org, "/api/v1/customers", customer_body(), "k1")
    customer_id = first.json()["id"]
    patch = client.patch(f"/api/v1/customers/{customer_id}", json={"name": "Renamed"}, headers=org.headers())
    assert patch.status_code == 200

    replay = post(client, org, "/api/v1/customers", customer_body(), "k1")

    assert replay.status_code == 201
    assert replay.json() == first.json(), "the first response, not the current state"
    assert customer_count(db, org) == 1


def test_the_same_key_with_another_body_is_409(client: httpx.Client, org: OrgContext, db: Db) -> None:
    assert post(client, org, "/api/v1/customers", customer_body(), "k").status_code == 201

    response = post(client, org, "/api/v1/customers", customer_body(name="Other GmbH"), "k")

    error = assert_error(response, 409, "CONFLICT")
    assert error["details"] == {"field": "Idempotency-Key", "existing_id": None}
    assert customer_count(db, org) == 1


def test_without_a_key_every_post_creates(client: httpx.Client, org: OrgContext, db: Db) -> None:
    for _ in range(2):
        create_customer(client, org, erp_customer_number=None)
    assert customer_count(db, org) == 2


def test_different_keys_create_separately(client: httpx.Client, org: OrgContext, db: Db) -> None:
    body = customer_body(erp_customer_number=None)
    ids = {post(client, org, "/api/v1/customers", body, key).json()["id"] for key in ("a", "b", "A")}
    assert len(ids) == 3
    assert customer_count(db, org) == 3


def test_keys_are_scoped_to_the_org(client: httpx.Client, org: OrgContext, other_org: OrgContext, db: Db) -> None:
    mine = post(client, org, "/api/v1/customers", customer_body(), "shared-key")
    theirs = post(client, other_org, "/api/v1/customers", customer_body(name="Theirs"), "shared-key")

    assert mine.status_code == theirs.status_code == 201
    assert theirs.json()["name"] == "Theirs"
    assert theirs.json()["org_id"] == str(other_org.id)
    assert customer_count(db, org) == customer_count(db, other_org) == 1


def test_keys_are_scoped_to_the_path(client: httpx.Client, org: OrgContext, db: Db) -> None:
    one = create_customer(client, org, erp_customer_number="1")
    two = create_customer(client, org, erp_customer_number="2")
    contact = {"email": "einkauf@muster.de", "is_primary": True}

    first = post(client, org, f"/api/v1/customers/{one['id']}/contacts", contact, "contact-key")
    second = post(client, org, f"/api/v1/customers/{two['id']}/contacts", contact, "contact-key")
    customer = post(client, org, "/api/v1/customers", customer_body(erp_customer_number="3"), "contact-key")

    assert first.status_code == second.status_code == customer.status_code == 201
    assert first.json()["customer_id"] == one["id"]
    assert second.json()["customer_id"] == two["id"]
    assert first.json()["id"] != second.json()["id"]
    assert contact_count(db, one["id"]) == contact_count(db, two["id"]) == 1


def test_contact_creation_replays_too(client: httpx.Client, org: OrgContext, db: Db) -> None:
    customer = create_customer(client, org)
    path = f"/api/v1/customers/{customer['id']}/contacts"

    first = post(client, org, path, {"email": "a@muster.de"}, "c1")
    again = post(client, org, path, {"email": "a@muster.de"}, "c1")
    other = post(client, org, path, {"email": "b@muster.de"}, "c1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert assert_error(other, 409, "CONFLICT")["details"] == {"field": "Idempotency-Key", "existing_id": None}
    assert contact_count(db, customer["id"]) == 1


def test_a_failed_request_is_not_remembered(client: httpx.Client, org: OrgContext, db: Db) -> None:
    invalid = post(client, org, "/api/v1/customers", customer_body(default_currency="EURO"), "retry-me")
    assert_error(invalid, 422, "VALIDATION_ERROR")

    fixed = post(client, org, "/api/v1/customers", customer_body(), "retry-me")

    assert fixed.status_code == 201, fixed.text
    assert customer_count(db, org) == 1


def test_a_conflict_is_not_remembered(client: httpx.Client, org: OrgContext, db: Db) -> None:
    holder = create_customer(client, org, erp_customer_number="4711")
    clash = post(client, org, "/api/v1/customers", customer_body(name="Clash"), "k")
    assert assert_error(clash, 409, "CONFLICT")["details"]["existing_id"] == holder["id"]

    fixed = post(client, org, "/api/v1/customers", customer_body(name="Clash", erp_customer_number="4712"), "k")

    assert fixed.status_code == 201, fixed.text
    assert customer_count(db, org) == 2


def test_a_request_for_a_missing_customer_is_not_remembered(client: httpx.Client, org: OrgContext) -> None:
    missing = post(client, org, f"/api/v1/customers/{uuid.uuid4()}/contacts", {"email": "a@b.de"}, "k")
    assert_error(missing, 404, "NOT_FOUND")
    customer = create_customer(client, org)
    assert (
        post(client, org, f"/api/v1/customers/{customer['id']}/contacts", {"email": "a@b.de"}, "k").status_code == 201
    )


def test_key_length_is_1_to_255(client: httpx.Client, org: OrgContext, db: Db) -> None:
    error = assert_error(post(client, org, "/api/v1/customers", customer_body(), "k" * 256), 422, "VALIDATION_ERROR")
    assert error_fields(error) == {"Idempotency-Key"}
    assert_error(post(client, org, "/api/v1/customers", customer_body(), ""), 422, "VALIDATION_ERROR")
    assert customer_count(db, org) == 0

    assert post(client, org, "/api/v1/customers", customer_body(), "k" * 255).status_code == 201
    assert post(client, org, "/api/v1/customers", customer_body(), "k" * 255).status_code == 201
    assert customer_count(db, org) == 1


def test_concurrent_requests_with_one_key_create_once(client: httpx.Client, org: OrgContext, db: Db) -> None:
    headers = {**org.headers(), "Idempotency-Key": "burst"}
    body = customer_body(contacts=[{"email": "a@muster.de", "is_primary": True}])

    def create(http: httpx.Client, index: int) -> tuple[int, dict[str, Any]]:
        response = http.post("/api/v1/customers", json=body, headers=headers)
        return response.status_code, response.json()

    results = run_together(str(client.base_url), 10, create)

    assert {status for status, _ in results} == {201}
    assert len({answer["id"] for _, answer in results}) == 1
    assert customer_count(db, org) == 1
