"""PATCH /customers/{id} as a JSON Merge Patch, and the ETag / If-Match rules (API.md §4)."""

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from customer_master.auth.models import Role
from tests.conftest import Db, OrgContext, assert_error, create_customer
from tests.customers.helpers import add_contact, error_fields, get_customer, run_together, timestamp

# A backend of this database blocked on a row or index lock (the PATCH waiting for the other transaction).
WAITING_ON_A_LOCK = (
    "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def patch(client: httpx.Client, org: OrgContext, customer_id: str, body: Any, **headers: str) -> httpx.Response:
    return client.patch(f"/api/v1/customers/{customer_id}", json=body, headers={**org.headers(), **headers})


def patched(client: httpx.Client, org: OrgContext, customer_id: str, body: Any) -> dict[str, Any]:
    response = patch(client, org, customer_id, body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def without_updated_at(customer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in customer.items() if key != "updated_at"}


def test_absent_fields_are_unchanged(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, shipping_address={"city": "Graz", "country": "AT"})

    result = patched(client, org, customer["id"], {"name": "  Neuer Name  "})

    assert result["name"] == "Neuer Name"
    assert without_updated_at({**result, "name": customer["name"]}) == without_updated_at(customer)
    assert get_customer(client, org, customer["id"]).json() == result


def test_every_field_can_be_replaced(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    body = {
        "name": "Anders AG",
        "erp_customer_number": " NEU-1 ",
        "default_currency": "chf",
        "default_language": "fr-ch",
        "shipping_address": {"street": "Rue 1", "city": "Genève", "country": "ch"},
    }

    result = patched(client, org, customer["id"], body)

    assert result["name"] == "Anders AG"
    assert result["erp_customer_number"] == "NEU-1"
    assert result["default_currency"] == "CHF"
    assert result["default_language"] == "fr-CH"
    assert result["shipping_address"] == {
        "street": "Rue 1",
        "street2": None,
        "city": "Genève",
        "postal_code": None,
        "state": None,
        "country": "CH",
    }
    assert result["billing_address"] == customer["billing_address"]


def test_null_clears_erp_number_addresses_and_metadata(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, shipping_address={"city": "Graz", "country": "AT"})

    result = patched(
        client,
        org,
        customer["id"],
        {"erp_customer_number": None, "billing_address": None, "shipping_address": None, "metadata": None},
    )

    assert result["erp_customer_number"] is None
    assert result["billing_address"] is None
    assert result["shipping_address"] is None
    assert result["metadata"] == {}
    assert result["name"] == customer["name"]


def test_an_address_is_merged_key_by_key(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)

    result = patched(client, org, customer["id"], {"billing_address": {"street": "New Street 123"}})

    assert result["billing_address"] == {**customer["billing_address"], "street": "New Street 123"}


def test_null_inside_an_address_removes_that_field(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)

    result = patched(client, org, customer["id"], {"billing_address": {"postal_code": None, "state": "BY"}})

    assert result["billing_address"] == {**customer["billing_address"], "postal_code": None, "state": "BY"}


def test_an_address_patched_empty_becomes_null(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, billing_address={"city": "Berlin"})

    result = patched(client, org, customer["id"], {"billing_address": {"city": None}})

    assert result["billing_address"] is None


def test_an_address_can_be_patched_into_existence(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)

    result = patched(client, org, customer["id"], {"shipping_address": {"city": "Linz", "country": "at"}})

    assert result["shipping_address"] == {
        "street": None,
        "street2": None,
        "city": "Linz",
        "postal_code": None,
        "state": None,
        "country": "AT",
    }


def test_metadata_is_merged_key_by_key(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, metadata={"a": 1, "b": {"x": 1, "y": 2}, "c": "keep"})

    result = patched(client, org, customer["id"], {"metadata": {"a": None, "b": {"y": None, "z": 3}, "d": [1]}})

    assert result["metadata"] == {"b": {"x": 1, "z": 3}, "c": "keep", "d": [1]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": None}, "name"),
        ({"default_currency": None}, "default_currency"),
        ({"default_language": None}, "default_language"),
        ({"name": "  "}, "name"),
        ({"erp_customer_number": ""}, "erp_customer_number"),
        ({"erp_customer_number": "a b"}, "erp_customer_number"),
        ({"default_currency": "EURO"}, "default_currency"),
        ({"default_language": "!!"}, "default_language"),
        ({"billing_address": {"foo": "x"}}, "billing_address.foo"),
        ({"billing_address": {"country": "XX"}}, "billing_address.country"),
        ({"shipping_address": {"country": "Deutschland"}}, "shipping_address.country"),
        ({"metadata": []}, "metadata"),
        ({"metadata": "x"}, "metadata"),
        ({"contacts": []}, "contacts"),
        ({"id": str(uuid.uuid4())}, "id"),
        ({"org_id": str(uuid.uuid4())}, "org_id"),
        ({"created_at": "2025-01-15T10:00:00Z"}, "created_at"),
        ({"updated_at": "2025-01-15T10:00:00Z"}, "updated_at"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_patches_are_422_and_change_nothing(
    client: httpx.Client, org: OrgContext, body: dict[str, Any], field: str
) -> None:
    customer = create_customer(client, org)
    before = get_customer(client, org, customer["id"])

    error = assert_error(patch(client, org, customer["id"], body), 422, "VALIDATION_ERROR")

    assert error_fields(error) == {field}
    after = get_customer(client, org, customer["id"])
    assert after.json() == before.json()
    assert after.headers["etag"] == before.headers["etag"]


def test_metadata_over_64_kib_after_merging_is_422(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, metadata={"a": "x" * 40_000})

    error = assert_error(patch(client, org, customer["id"], {"metadata": {"b": "y" * 40_000}}), 422, "VALIDATION_ERROR")

    assert error_fields(error) == {"metadata"}


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"null", b"1", b"{broken"])
def test_a_patch_that_is_not_an_object_is_422(client: httpx.Client, org: OrgContext, body: bytes) -> None:
    customer = create_customer(client, org)
    response = client.patch(
        f"/api/v1/customers/{customer['id']}",
        content=body,
        headers={**org.headers(), "Content-Type": "application/merge-patch+json"},
    )
    assert_error(response, 422, "VALIDATION_ERROR")


def test_patch_to_another_customers_erp_number_is_409(client: httpx.Client, org: OrgContext) -> None:
    holder = create_customer(client, org, erp_customer_number="K-1")
    customer = create_customer(client, org, erp_customer_number="K-2")

    error = assert_error(patch(client, org, customer["id"], {"erp_customer_number": "K-1"}), 409, "CONFLICT")

    assert error["details"] == {"field": "erp_customer_number", "existing_id": holder["id"]}
    assert get_customer(client, org, customer["id"]).json()["erp_customer_number"] == "K-2"


def test_patch_keeping_its_own_erp_number_is_fine(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, erp_customer_number="K-1")
    assert patched(client, org, customer["id"], {"erp_customer_number": "K-1", "name": "X"})["name"] == "X"


def test_updated_at_moves_forward_when_something_changed(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)

    result = patched(client, org, customer["id"], {"metadata": {"discount_group": "B"}})

    assert timestamp(result["updated_at"]) > timestamp(customer["updated_at"])
    assert result["created_at"] == customer["created_at"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "Muster GmbH"},
        {"name": " Muster GmbH ", "default_currency": "eur", "default_language": "de-de"},
        {"billing_address": {"street": "Musterstraße 1", "street2": None}},
        {"metadata": {"discount_group": "A", "absent": None}},
        {"shipping_address": None},
    ],
)
def test_updated_at_and_etag_stay_when_nothing_changed(
    client: httpx.Client, org: OrgContext, db: Db, body: dict[str, Any]
) -> None:
    customer = create_customer(client, org)
    etag = get_customer(client, org, customer["id"]).headers["etag"]

    response = patch(client, org, customer["id"], body)

    assert response.status_code == 200, response.text
    assert response.json() == customer
    assert response.headers["etag"] == etag
    stored = db.fetch("SELECT updated_at FROM customer WHERE id = :id", id=uuid.UUID(customer["id"]))
    assert stored[0].updated_at == timestamp(customer["updated_at"])


def test_patch_answers_the_new_etag(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    old_etag = get_customer(client, org, customer["id"]).headers["etag"]

    response = patch(client, org, customer["id"], {"name": "Neu"})

    assert response.status_code == 200
    assert response.headers["etag"] != old_etag
    assert response.headers["etag"] == get_customer(client, org, customer["id"]).headers["etag"]


def test_if_match_with_the_current_etag_applies(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    etag = get_customer(client, org, customer["id"]).headers["etag"]

    response = patch(client, org, customer["id"], {"name": "Neu"}, **{"If-Match": etag})

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Neu"
    assert patch(client, org, customer["id"], {"name": "Neuer"}, **{"If-Match": "*"}).status_code == 200


def test_if_match_with_a_stale_etag_is_412(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    stale = get_customer(client, org, customer["id"]).headers["etag"]
    patched(client, org, customer["id"], {"name": "Someone else's change"})

    error = assert_error(
        patch(client, org, customer["id"], {"name": "Mine"}, **{"If-Match": stale}), 412, "PRECONDITION_FAILED"
    )

    assert error["message"]
    assert get_customer(client, org, customer["id"]).json()["name"] == "Someone else's change"
    assert_error(
        patch(client, org, customer["id"], {"name": "Mine"}, **{"If-Match": '"nonsense"'}), 412, "PRECONDITION_FAILED"
    )


def test_an_etag_goes_stale_when_a_contact_is_added(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    etag = get_customer(client, org, customer["id"]).headers["etag"]
    add_contact(client, org, customer["id"], email="neu@muster.de")

    assert get_customer(client, org, customer["id"]).headers["etag"] != etag
    assert_error(patch(client, org, customer["id"], {"name": "Mine"}, **{"If-Match": etag}), 412, "PRECONDITION_FAILED")


def test_delete_with_a_stale_etag_is_412_and_keeps_the_customer(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    stale = get_customer(client, org, customer["id"]).headers["etag"]
    patched(client, org, customer["id"], {"name": "Changed"})

    response = client.delete(f"/api/v1/customers/{customer['id']}", headers={**org.headers(), "If-Match": stale})

    assert_error(response, 412, "PRECONDITION_FAILED")
    current = get_customer(client, org, customer["id"]).headers["etag"]
    response = client.delete(f"/api/v1/customers/{customer['id']}", headers={**org.headers(), "If-Match": current})
    assert response.status_code == 204


def test_patch_roles_and_tenancy(client: httpx.Client, org: OrgContext, other_org: OrgContext) -> None:
    customer = create_customer(client, org)
    for role in (Role.VIEWER, Role.OPS):
        response = client.patch(f"/api/v1/customers/{customer['id']}", json={"name": "x"}, headers=org.headers(role))
        assert_error(response, 403, "FORBIDDEN")
    response = client.patch(
        f"/api/v1/customers/{customer['id']}", json={"name": "x"}, headers=org.headers(Role.INTEGRATOR)
    )
    assert response.status_code == 200
    assert_error(patch(client, other_org, customer["id"], {"name": "y"}), 404, "NOT_FOUND")
    assert_error(patch(client, org, str(uuid.uuid4()), {"name": "y"}), 404, "NOT_FOUND")
    assert get_customer(client, org, customer["id"]).json()["name"] == "x"


def test_concurrent_patches_to_one_erp_number_give_one_winner_and_409s(
    client: httpx.Client, org: OrgContext, db: Db
) -> None:
    customers = [create_customer(client, org, erp_customer_number=f"OLD-{index}")["id"] for index in range(10)]
    headers = org.headers()

    def take_number(http: httpx.Client, index: int) -> httpx.Response:
        return http.patch(
            f"/api/v1/customers/{customers[index]}", json={"erp_customer_number": "SAME"}, headers=headers
        )

    responses = run_together(str(client.base_url), len(customers), take_number)

    assert sorted(r.status_code for r in responses) == [200] + [409] * (len(customers) - 1)
    (winner,) = (r.json()["id"] for r in responses if r.status_code == 200)
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["details"] == {"field": "erp_customer_number", "existing_id": winner}
    holders = db.fetch("SELECT id FROM customer WHERE org_id = :o AND erp_customer_number = 'SAME'", o=org.id)
    assert [str(row.id) for row in holders] == [winner]


def test_losing_a_race_for_an_erp_number_is_409_not_500(client: httpx.Client, org: OrgContext, db: Db) -> None:
    """Another transaction takes the number after this PATCH checked it: the unique index decides."""
    holder = create_customer(client, org, erp_customer_number="A-1")
    racer = create_customer(client, org, erp_customer_number="B-1")

    number_taken = threading.Event()

    async def take_the_number_and_commit_once_the_patch_waits() -> None:
        async with db.database.engine.begin() as transaction:
            await transaction.execute(
                text("UPDATE customer SET erp_customer_number = 'SAME' WHERE id = :id"), {"id": uuid.UUID(holder["id"])}
            )
            number_taken.set()
            async with db.database.engine.connect() as observer:
                for _ in range(3000):
                    if await observer.scalar(text(WAITING_ON_A_LOCK)):
                        break
                    await asyncio.sleep(0.02)

    def patch_when_taken() -> httpx.Response:
        assert number_taken.wait(timeout=30)
        return patch(client, org, racer["id"], {"erp_customer_number": "SAME"})

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(patch_when_taken)
        db.run(take_the_number_and_commit_once_the_patch_waits())
        response = pending.result(timeout=60)

    error = assert_error(response, 409, "CONFLICT")
    assert error["details"] == {"field": "erp_customer_number", "existing_id": holder["id"]}
    assert get_customer(client, org, racer["id"]).json()["erp_customer_number"] == "B-1"
