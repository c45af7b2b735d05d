"""API.md §10: every change of a customer or contact is in its history, with who, where and what."""

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from customer_master.auth.models import Role
from tests.conftest import Db, OrgContext, assert_error, create_customer


def history(client: httpx.Client, org: OrgContext, customer_id: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/customers/{customer_id}/history", params=params, headers=org.headers(Role.VIEWER))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_create_lists_every_non_null_field_with_who_and_where(client: httpx.Client, org: OrgContext) -> None:
    response = client.post(
        "/api/v1/customers",
        json={
            "name": "Muster GmbH",
            "default_currency": "EUR",
            "default_language": "de-DE",
            "billing_address": {"city": "München", "country": "DE"},
            "metadata": {"group": "A", "empty": None},
            "contacts": [{"email": "einkauf@muster.de", "is_primary": False}],
        },
        headers={**org.headers(), "X-Request-ID": "req-create-1"},
    )
    assert response.status_code == 201, response.text
    customer = response.json()
    contact_id = customer["contacts"][0]["id"]

    entries = history(client, org, customer["id"])

    assert [entry["type"] for entry in entries] == ["contact.created", "customer.created"]
    created = entries[1]
    assert created["changes"] == {
        "name": {"from": None, "to": "Muster GmbH"},
        "default_currency": {"from": None, "to": "EUR"},
        "default_language": {"from": None, "to": "de-DE"},
        "billing_address.city": {"from": None, "to": "München"},
        "billing_address.country": {"from": None, "to": "DE"},
        "metadata.group": {"from": None, "to": "A"},
    }
    assert created["customer_id"] == customer["id"]
    assert created["contact_id"] is None
    assert created["actor"] == {"type": "api_token", "id": created["actor"]["id"], "label": "test-admin"}
    assert created["source"] == "api"
    assert created["request_id"] == "req-create-1"
    assert created["import_id"] is None
    assert created["merge_id"] is None
    assert entries[0]["contact_id"] == contact_id
    assert entries[0]["changes"] == {
        "email": {"from": None, "to": "einkauf@muster.de"},
        "is_primary": {"from": None, "to": False},  # false is a value: listed
    }
    assert entries[0]["sequence"] > entries[1]["sequence"]


def test_update_lists_exactly_the_changed_fields_and_a_no_op_records_nothing(
    client: httpx.Client, org: OrgContext
) -> None:
    customer = create_customer(client, org)
    path = f"/api/v1/customers/{customer['id']}"
    same = client.patch(
        path, json={"name": customer["name"], "metadata": {"discount_group": "A"}}, headers=org.headers()
    )
    assert same.status_code == 200
    assert len(history(client, org, customer["id"])) == 1

    changed = client.patch(
        path, json={"billing_address": {"city": "Berlin"}, "metadata": {"discount_group": None}}, headers=org.headers()
    )
    assert changed.status_code == 200, changed.text

    latest = history(client, org, customer["id"])[0]
    assert latest["type"] == "customer.updated"
    assert latest["changes"] == {
        "billing_address.city": {"from": "München", "to": "Berlin"},
        "metadata.discount_group": {"from": "A", "to": None},
    }


def test_contact_changes_are_entries_of_their_own(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, contacts=[{"email": "a@muster.de", "is_primary": True}])
    first = customer["contacts"][0]["id"]
    contacts = f"/api/v1/customers/{customer['id']}/contacts"
    second = client.post(contacts, json={"email": "b@muster.de", "is_primary": True}, headers=org.headers()).json()
    client.patch(f"{contacts}/{second['id']}", json={"name": "Berta"}, headers=org.headers())

    entries = history(client, org, customer["id"])

    assert [(e["type"], e["contact_id"]) for e in entries[:3]] == [
        ("contact.updated", second["id"]),
        ("contact.created", second["id"]),
        ("contact.updated", first),  # lost its primary mark to the new contact, in the same transaction
    ]
    assert entries[0]["changes"] == {"name": {"from": None, "to": "Berta"}}
    assert entries[2]["changes"] == {"is_primary": {"from": True, "to": False}}


def test_a_deleted_customer_keeps_its_history_contacts_first(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, contacts=[{"email": "a@muster.de"}, {"email": "b@muster.de"}])
    deleted = client.delete(f"/api/v1/customers/{customer['id']}", headers=org.headers())
    assert deleted.status_code == 204

    entries = history(client, org, customer["id"])

    assert [e["type"] for e in entries[:3]] == ["customer.deleted", "contact.deleted", "contact.deleted"]
    assert entries[0]["changes"]["name"] == {"from": "Muster GmbH", "to": None}
    assert entries[0]["changes"]["billing_address.city"] == {"from": "München", "to": None}
    assert {e["changes"]["email"]["from"] for e in entries[1:3]} == {"a@muster.de", "b@muster.de"}


def test_paging_walks_every_entry_once_newest_first(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    for n in range(4):
        client.patch(f"/api/v1/customers/{customer['id']}", json={"name": f"Name {n}"}, headers=org.headers())
    walked: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get(
            f"/api/v1/customers/{customer['id']}/history", params=params, headers=org.headers(Role.VIEWER)
        ).json()
        walked += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert [e["type"] for e in walked] == ["customer.updated"] * 4 + ["customer.created"]
    sequences = [e["sequence"] for e in walked]
    assert sequences == sorted(sequences, reverse=True)
    assert len(set(sequences)) == 5


def test_unknown_and_other_orgs_customers_are_404(client: httpx.Client, org: OrgContext, other_org: OrgContext) -> None:
    theirs = create_customer(client, other_org)
    for customer_id in (theirs["id"], str(uuid.uuid4())):
        response = client.get(f"/api/v1/customers/{customer_id}/history", headers=org.headers())
        assert_error(response, 404, "NOT_FOUND")
    assert_error(client.get("/api/v1/customers/x/history", headers=org.headers()), 422, "VALIDATION_ERROR")
    bad_cursor = client.get(f"/api/v1/customers/{theirs['id']}/history?cursor=abc", headers=other_org.headers())
    assert_error(bad_cursor, 422, "VALIDATION_ERROR")


def test_a_rolled_back_write_records_nothing(org: OrgContext, db: Db) -> None:
    async def write_then_fail() -> None:
        async with db.database.transaction() as session:
            await session.execute(
                text(
                    "INSERT INTO customer (org_id, name, default_currency, default_language)"
                    " VALUES (:org, 'X', 'EUR', 'de')"
                ),
                {"org": org.id},
            )
            raise RuntimeError("the request fails after its write")

    with pytest.raises(RuntimeError):
        db.run(write_then_fail())

    assert db.fetch("SELECT count(*) FROM change_entry WHERE org_id = :org", org=org.id) == [(0,)]
    assert db.fetch("SELECT count(*) FROM change_transaction WHERE org_id = :org", org=org.id) == [(0,)]


def import_csv(client: httpx.Client, org: OrgContext, content: str) -> dict[str, Any]:
    response = client.post(
        "/api/v1/imports/customers",
        files={"file": ("kunden.csv", content.encode(), "text/csv")},
        headers={**org.headers(Role.INTEGRATOR), "X-Request-ID": "req-import"},
    )
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def org_entries(db: Db, org: OrgContext) -> int:
    ((count,),) = db.fetch("SELECT count(*) FROM change_entry WHERE org_id = :org", org=org.id)
    return int(count)


def test_an_import_records_one_entry_per_changed_customer_and_contact(
    client: httpx.Client, org: OrgContext, db: Db
) -> None:
    header = "name,erp_customer_number,default_currency,default_language,billing_city,contact_email,contact_name\n"
    rows = [f"Kunde {n},K-{n},EUR,de-DE,Köln,k{n}@kunde{n}.de,Anna\n" for n in range(10)]
    first = import_csv(client, org, header + "".join(rows))
    assert first["imported"] == 10
    assert org_entries(db, org) == 20

    again = import_csv(client, org, header + "".join(rows))
    assert again["unchanged"] == 10
    assert org_entries(db, org) == 20, "an unchanged re-import records nothing"

    rows[3] = rows[3].replace("Köln", "Bonn")
    rows[7] = rows[7].replace("Anna", "Berta")
    changed = import_csv(client, org, header + "".join(rows))
    assert changed["updated"] == 2
    assert org_entries(db, org) == 22

    customer = client.get("/api/v1/customers?erp_number=K-3", headers=org.headers()).json()["items"][0]
    latest = history(client, org, customer["id"])[0]
    assert latest["type"] == "customer.updated"
    assert latest["changes"] == {"billing_address.city": {"from": "Köln", "to": "Bonn"}}
    assert latest["source"] == "import"
    assert latest["import_id"] == changed["import_id"]
    assert latest["request_id"] == "req-import"
    assert latest["actor"]["label"] == "test-integrator"
    runs = client.get("/api/v1/imports", headers=org.headers()).json()["items"]
    assert changed["import_id"] in {run["id"] for run in runs}


def test_a_dry_run_records_nothing(client: httpx.Client, org: OrgContext, db: Db) -> None:
    content = "name,erp_customer_number,default_currency,default_language\nTrocken GmbH,T-1,EUR,de-DE\n"
    response = client.post(
        "/api/v1/imports/customers?dry_run=true",
        files={"file": ("kunden.csv", content.encode(), "text/csv")},
        headers=org.headers(),
    )
    assert response.json()["imported"] == 1
    assert org_entries(db, org) == 0
