"""API.md §12: merging customers into a survivor, their old ids and ERP numbers, and undo."""

import uuid
from typing import Any

import httpx
import pytest

from customer_master.auth.models import Role
from tests.conftest import Db, OrgContext, assert_error, create_customer
from tests.customers.helpers import run_together


def merge(client: httpx.Client, org: OrgContext, survivor: str, *merged: str, **body: Any) -> httpx.Response:
    return client.post(
        "/api/v1/customers/merge",
        json={"survivor_id": survivor, "merged_ids": list(merged), **body},
        headers=org.headers(Role.INTEGRATOR),
    )


def merged_ok(client: httpx.Client, org: OrgContext, survivor: str, *merged: str, **body: Any) -> dict[str, Any]:
    response = merge(client, org, survivor, *merged, **body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def undo(client: httpx.Client, org: OrgContext, merge_id: str, role: Role = Role.INTEGRATOR) -> httpx.Response:
    return client.post(f"/api/v1/merges/{merge_id}/undo", headers=org.headers(role))


def document(client: httpx.Client, org: OrgContext, customer_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/customers/{customer_id}", headers=org.headers())
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def history(client: httpx.Client, org: OrgContext, customer_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/customers/{customer_id}/history", headers=org.headers(Role.VIEWER))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def without_updated_at(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_updated_at(v) for k, v in value.items() if k != "updated_at"}
    if isinstance(value, list):
        return [without_updated_at(v) for v in value]
    return value


def contact(email: str, name: str | None = None, is_primary: bool = False) -> dict[str, Any]:
    return {"email": email, "name": name, "is_primary": is_primary}


@pytest.fixture
def three(client: httpx.Client, org: OrgContext) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A survivor and two customers that are the same company, with overlapping contacts."""
    survivor = create_customer(
        client,
        org,
        name="Muster GmbH",
        erp_customer_number="S-1",
        shipping_address=None,
        metadata={"group": "A"},
        contacts=[contact("einkauf@muster.de", None, False), contact("chef@muster.de", "Chef", False)],
    )
    first = create_customer(
        client,
        org,
        name="Muster G.m.b.H.",
        erp_customer_number="M-1",
        default_currency="CHF",
        shipping_address={"street": "Lager 1", "city": "Augsburg", "country": "DE"},
        metadata={"group": "B", "region": "Süd"},
        contacts=[contact("EINKAUF@muster.de", "Einkauf Team", True), contact("lager@muster.de", "Lager", False)],
    )
    second = create_customer(
        client,
        org,
        name="Muster",
        erp_customer_number="M-2",
        metadata={"region": "Nord", "tier": "2"},
        contacts=[contact("lager@muster.de", "Lager 2", True), contact("buchhaltung@muster.de", None, False)],
    )
    return survivor, first, second


def test_merge_takes_the_survivors_fields_fills_nulls_unites_contacts_and_keeps_numbers_as_aliases(
    client: httpx.Client, org: OrgContext, three: tuple[dict[str, Any], ...]
) -> None:
    survivor, first, second = three

    result = merged_ok(client, org, survivor["id"], first["id"], second["id"])

    assert result["merge_id"] is not None
    assert result["dry_run"] is False
    assert result["merged_ids"] == [first["id"], second["id"]]
    customer = result["customer"]
    assert customer == document(client, org, survivor["id"])
    assert customer["id"] == survivor["id"]
    assert customer["name"] == "Muster GmbH"
    assert customer["default_currency"] == "EUR"  # the survivor's
    assert customer["erp_customer_number"] == "S-1"
    assert customer["erp_aliases"] == ["M-1", "M-2"]
    assert customer["shipping_address"]["city"] == "Augsburg"  # null on the survivor: the first merged value
    assert customer["metadata"] == {"group": "A", "region": "Süd", "tier": "2"}
    contacts = {c["email"]: c for c in customer["contacts"]}
    assert sorted(contacts) == ["buchhaltung@muster.de", "chef@muster.de", "einkauf@muster.de", "lager@muster.de"]
    survivor_einkauf = next(c for c in survivor["contacts"] if c["email"] == "einkauf@muster.de")
    first_lager = next(c for c in first["contacts"] if c["email"] == "lager@muster.de")
    assert contacts["einkauf@muster.de"]["id"] == survivor_einkauf["id"]  # the survivor's contact stays…
    assert contacts["einkauf@muster.de"]["name"] == "Einkauf Team"  # …its null name filled
    assert contacts["lager@muster.de"]["id"] == first_lager["id"]  # the first merged customer's stays
    assert contacts["lager@muster.de"]["name"] == "Lager"
    # No primary on the survivor: the first merged customer's primary (its e-mail's kept contact).
    assert [c["email"] for c in customer["contacts"] if c["is_primary"]] == ["einkauf@muster.de"]
    assert customer["contacts"][0]["email"] == "einkauf@muster.de"


def test_pick_takes_a_field_from_a_merged_customer_also_null_and_metadata_first(
    client: httpx.Client, org: OrgContext, three: tuple[dict[str, Any], ...]
) -> None:
    survivor, first, second = three
    pick = {
        "name": first["id"],
        "erp_customer_number": second["id"],
        "default_currency": first["id"],
        "shipping_address": second["id"],  # null there: null
        "metadata": second["id"],
    }

    customer = merged_ok(client, org, survivor["id"], first["id"], second["id"], pick=pick)["customer"]

    assert customer["name"] == "Muster G.m.b.H."
    assert customer["default_currency"] == "CHF"
    assert customer["erp_customer_number"] == "M-2"
    assert customer["erp_aliases"] == ["S-1", "M-1"]
    assert customer["shipping_address"] is None
    assert customer["metadata"] == {"region": "Nord", "tier": "2", "group": "A"}


def test_a_dry_run_answers_the_result_and_writes_nothing(
    client: httpx.Client, org: OrgContext, three: tuple[dict[str, Any], ...]
) -> None:
    survivor, first, second = three
    before = [document(client, org, c["id"]) for c in three]
    history_before = history(client, org, survivor["id"])

    dry = merged_ok(client, org, survivor["id"], first["id"], second["id"], dry_run=True)

    assert dry["merge_id"] is None
    assert dry["dry_run"] is True
    assert [document(client, org, c["id"]) for c in three] == before
    assert history(client, org, survivor["id"]) == history_before
    real = merged_ok(client, org, survivor["id"], first["id"], second["id"])
    assert without_updated_at(dry["customer"]) == without_updated_at(real["customer"])


def test_merged_ids_answer_404_with_the_survivor_and_leave_lists_and_search(
    client: httpx.Client, org: OrgContext, three: tuple[dict[str, Any], ...]
) -> None:
    survivor, first, second = three
    merged_ok(client, org, survivor["id"], first["id"], second["id"])

    for method, path, body in [
        ("GET", f"/api/v1/customers/{first['id']}", None),
        ("PATCH", f"/api/v1/customers/{first['id']}", {"name": "X"}),
        ("DELETE", f"/api/v1/customers/{first['id']}", None),
        ("GET", f"/api/v1/customers/{first['id']}/contacts", None),
        ("POST", f"/api/v1/customers/{second['id']}/contacts", {"email": "neu@muster.de"}),
    ]:
        error = assert_error(client.request(method, path, json=body, headers=org.headers()), 404, "NOT_FOUND")
        assert error["details"]["merged_into"] == survivor["id"], (method, path)
    listed = client.get("/api/v1/customers", params={"q": "muster"}, headers=org.headers()).json()["items"]
    assert [c["id"] for c in listed] == [survivor["id"]]
    everything = client.get("/api/v1/customers", headers=org.headers()).json()["items"]
    assert [c["id"] for c in everything] == [survivor["id"]]
    assert client.get("/api/v1/customers", params={"erp_number": "M-1"}, headers=org.headers()).json()["items"] == []


def test_an_alias_cannot_be_taken_by_another_customer_until_the_survivor_is_deleted(
    client: httpx.Client, org: OrgContext, three: tuple[dict[str, Any], ...]
) -> None:
    survivor, first, second = three
    merged_ok(client, org, survivor["id"], first["id"], second["id"])
    other = create_customer(client, org, name="Andere AG", erp_customer_number="A-1")

    created = client.post(
        "/api/v1/customers",
        json={"name": "Neu", "erp_customer_number": "M-1", "default_currency": "EUR", "default_language": "de"},
        headers=org.headers(),
    )
    error = assert_error(created, 409, "CONFLICT")
    assert error["details"] == {"field": "erp_customer_number", "existing_id": survivor["id"]}
    patched = client.patch(
        f"/api/v1/customers/{other['id']}", json={"erp_customer_number": "M-2"}, headers=org.headers()
    )
    assert assert_error(patched, 409, "CONFLICT")["details"]["existing_id"] == survivor["id"]

    assert client.delete(f"/api/v1/customers/{survivor['id']}", headers=org.headers()).status_code == 204
    patched = client.patch(
        f"/api/v1/customers/{other['id']}", json={"erp_customer_number": "M-2"}, headers=org.headers()
    )
    assert patched.status_code == 200, patched.text


def test_history_of_a_merge(client: httpx.Client, org: OrgContext, three: tuple[dict[str, Any], ...]) -> None:
    survivor, first, second = three
    result = merged_ok(client, org, survivor["id"], first["id"], second["id"])
    merge_id = result["merge_id"]

    merged = history(client, org, survivor["id"])
    of_merge = [e for e in merged if e["merge_id"] == merge_id]
    assert all(e["source"] == "merge" and e["actor"]["label"] == "test-integrator" for e in of_merge)
    survivor_entry = next(e for e in of_merge if e["type"] == "customer.merged")
    assert survivor_entry["changes"]["merged_ids"] == {"from": None, "to": [first["id"], second["id"]]}
    assert survivor_entry["changes"]["erp_aliases"] == {"from": [], "to": ["M-1", "M-2"]}
    assert survivor_entry["changes"]["shipping_address.city"] == {"from": None, "to": "Augsburg"}
    moved = next(c for c in first["contacts"] if c["email"] == "lager@muster.de")
    assert {(e["type"], e["contact_id"]) for e in of_merge if e["contact_id"]} >= {("contact.created", moved["id"])}

    away = history(client, org, first["id"])
    assert away[0]["type"] == "customer.merged_away"
    assert away[0]["changes"] == {"merged_into": {"from": None, "to": survivor["id"]}}
    assert away[0]["merge_id"] == merge_id
    # its contacts' entries come before its merged_away: they left it (moved or dropped)
    left = [e for e in away if e["merge_id"] == merge_id and e["contact_id"]]
    assert {e["type"] for e in left} == {"contact.deleted"}
    assert len(left) == 2
    assert all(e["sequence"] < away[0]["sequence"] for e in left)


def test_undo_brings_back_every_customer_and_contact_as_it_was(
    client: httpx.Client, org: OrgContext, three: tuple[dict[str, Any], ...]
) -> None:
    survivor, first, second = three
    before = [document(client, org, c["id"]) for c in three]
    merge_id = merged_ok(client, org, survivor["id"], first["id"], second["id"])["merge_id"]

    response = undo(client, org, merge_id)

    assert response.status_code == 200, response.text
    restored = response.json()["customers"]
    assert without_updated_at(restored) == without_updated_at(before)
    assert without_updated_at([document(client, org, c["id"]) for c in three]) == without_updated_at(before)
    assert client.get("/api/v1/customers", params={"erp_number": "M-1"}, headers=org.headers()).json()["items"]
    entries = [e for e in history(client, org, survivor["id"]) if e["merge_id"] == merge_id]
    assert entries[0]["type"] in {"customer.updated", "contact.updated", "contact.deleted"}
    survivor_undo = next(e for e in entries if e["type"] == "customer.updated")
    assert survivor_undo["changes"]["erp_aliases"] == {"from": ["M-1", "M-2"], "to": []}
    assert history(client, org, first["id"])[0]["type"] in {"customer.created", "contact.created"}
    assert any(e["type"] == "customer.created" and e["merge_id"] == merge_id for e in history(client, org, first["id"]))

    again = assert_error(undo(client, org, merge_id), 409, "CONFLICT")
    assert again["details"] == {"field": "merge_id", "existing_id": survivor["id"]}


@pytest.mark.parametrize("change", ["patch", "contact", "merged_again", "deleted"])
def test_undo_is_refused_when_the_survivor_changed_since(
    client: httpx.Client, org: OrgContext, three: tuple[dict[str, Any], ...], change: str
) -> None:
    survivor, first, second = three
    merge_id = merged_ok(client, org, survivor["id"], first["id"])["merge_id"]
    path = f"/api/v1/customers/{survivor['id']}"
    if change == "patch":
        assert client.patch(path, json={"name": "Muster GmbH & Co. KG"}, headers=org.headers()).status_code == 200
    elif change == "contact":
        contact_id = document(client, org, survivor["id"])["contacts"][0]["id"]
        assert (
            client.patch(f"{path}/contacts/{contact_id}", json={"name": "Neu"}, headers=org.headers()).status_code
            == 200
        )
    elif change == "merged_again":
        merged_ok(client, org, second["id"], survivor["id"])
    else:
        assert client.delete(path, headers=org.headers()).status_code == 204

    error = assert_error(undo(client, org, merge_id), 409, "CONFLICT")

    assert error["details"] == {"field": "merge_id", "existing_id": survivor["id"]}
    assert assert_error(client.get(f"/api/v1/customers/{first['id']}", headers=org.headers()), 404, "NOT_FOUND")


def test_refused_merges(
    client: httpx.Client, org: OrgContext, other_org: OrgContext, three: tuple[dict[str, Any], ...]
) -> None:
    survivor, first, second = three
    foreign = create_customer(client, other_org)
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"merged_ids": [survivor["id"]]}, "merged_ids"),
        ({"merged_ids": [first["id"], first["id"]]}, "merged_ids"),
        ({"merged_ids": []}, "merged_ids"),
        ({"merged_ids": [str(uuid.uuid4()) for _ in range(51)]}, "merged_ids"),
        ({"merged_ids": [first["id"]], "pick": {"name": second["id"]}}, "pick.name"),
        ({"merged_ids": [first["id"]], "pick": {"contacts": first["id"]}}, "pick.contacts"),
        ({"merged_ids": [first["id"]], "extra": 1}, "extra"),
    ]
    for body, field in cases:
        response = client.post(
            "/api/v1/customers/merge", json={"survivor_id": survivor["id"], **body}, headers=org.headers()
        )
        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert field in {e["field"] for e in error["details"]["errors"]}, (body, error)
    assert_error(merge(client, org, survivor["id"], foreign["id"]), 404, "NOT_FOUND")
    assert_error(merge(client, org, foreign["id"], first["id"]), 404, "NOT_FOUND")
    assert_error(merge(client, org, survivor["id"], str(uuid.uuid4())), 404, "NOT_FOUND")

    merged_ok(client, org, survivor["id"], first["id"])
    error = assert_error(merge(client, org, second["id"], first["id"]), 422, "VALIDATION_ERROR")
    assert error["details"]["errors"][0]["field"] == "merged_ids.0"
    error = assert_error(merge(client, org, first["id"], second["id"]), 422, "VALIDATION_ERROR")
    assert error["details"]["errors"][0]["field"] == "survivor_id"
    assert_error(undo(client, other_org, str(uuid.uuid4())), 404, "NOT_FOUND")


def test_roles_and_other_orgs(
    client: httpx.Client, org: OrgContext, other_org: OrgContext, three: tuple[dict[str, Any], ...]
) -> None:
    survivor, first, _ = three
    body = {"survivor_id": survivor["id"], "merged_ids": [first["id"]]}
    for role in (Role.VIEWER, Role.OPS):
        response = client.post("/api/v1/customers/merge", json=body, headers=org.headers(role))
        assert_error(response, 403, "FORBIDDEN")
    merge_id = merged_ok(client, org, survivor["id"], first["id"])["merge_id"]
    for role in (Role.VIEWER, Role.OPS):
        assert_error(undo(client, org, merge_id, role), 403, "FORBIDDEN")
    assert_error(undo(client, other_org, merge_id, Role.ADMIN), 404, "NOT_FOUND")
    response = client.post("/api/v1/customers/merge", json=body, headers=other_org.headers())
    assert_error(response, 404, "NOT_FOUND")
    assert undo(client, org, merge_id, Role.ADMIN).status_code == 200
    allowed = client.get("/api/v1/customers/merge", headers=org.headers())
    assert_error(allowed, 405, "METHOD_NOT_ALLOWED")
    assert allowed.headers["allow"] == "POST"


def test_two_merges_over_one_customer_at_once_never_both_succeed(
    client: httpx.Client, org: OrgContext, server: Any, db: Db
) -> None:
    for round_ in range(3):
        shared = create_customer(client, org, name=f"Geteilt {round_}", erp_customer_number=f"G-{round_}")
        survivors = [
            create_customer(client, org, name=f"Ziel {round_}-{i}", erp_customer_number=f"Z-{round_}-{i}")
            for i in range(2)
        ]

        bodies = [{"survivor_id": s["id"], "merged_ids": [shared["id"]]} for s in survivors]

        def call(http: httpx.Client, index: int, bodies: list[dict[str, Any]] = bodies) -> int:
            return http.post("/api/v1/customers/merge", json=bodies[index], headers=org.headers()).status_code

        statuses = sorted(run_together(server.base_url, 2, call))

        assert statuses == [200, 422], statuses
        holders = db.fetch(
            "SELECT customer_id FROM customer_erp_alias WHERE org_id = :org AND erp_customer_number = :n",
            org=org.id,
            n=f"G-{round_}",
        )
        assert len(holders) == 1


def test_merging_fifty_customers_with_their_contacts(client: httpx.Client, org: OrgContext) -> None:
    survivor = create_customer(client, org, name="Groß GmbH", erp_customer_number="GROSS")
    merged = [
        create_customer(
            client,
            org,
            name=f"Groß GmbH Filiale {i}",
            erp_customer_number=f"GROSS-{i}",
            contacts=[contact(f"filiale{i}@gross.de", is_primary=True), contact("zentrale@gross.de", f"Zentrale {i}")],
        )["id"]
        for i in range(50)
    ]

    customer = merged_ok(client, org, survivor["id"], *merged)["customer"]

    assert customer["erp_aliases"] == [f"GROSS-{i}" for i in range(50)]
    assert len(customer["contacts"]) == 51
    assert [c["email"] for c in customer["contacts"] if c["is_primary"]] == ["filiale0@gross.de"]
    assert next(c for c in customer["contacts"] if c["email"] == "zentrale@gross.de")["name"] == "Zentrale 0"


def test_a_merge_racing_an_import_of_the_merged_number_never_leaves_the_number_twice(
    client: httpx.Client, org: OrgContext, server: Any, db: Db
) -> None:
    for round_ in range(4):
        number = f"RACE-{round_}"
        survivor = create_customer(client, org, name=f"Ziel {round_}", erp_customer_number=f"ZIEL-{round_}")
        merged = create_customer(client, org, name=f"Quelle {round_}", erp_customer_number=number)
        csv = f"name,erp_customer_number,default_currency,default_language\nImportiert {round_},{number},EUR,de\n"

        body = {"survivor_id": survivor["id"], "merged_ids": [merged["id"]]}

        def call(http: httpx.Client, index: int, csv: str = csv, body: dict[str, Any] = body) -> httpx.Response:
            if index == 0:
                return http.post("/api/v1/customers/merge", json=body, headers=org.headers())
            files = {"file": ("race.csv", csv.encode(), "text/csv")}
            return http.post("/api/v1/imports/customers", files=files, headers=org.headers())

        merge_response, import_response = run_together(server.base_url, 2, call)

        assert merge_response.status_code == 200, merge_response.text
        assert import_response.status_code == 200, import_response.text
        report = import_response.json()
        assert report["failed"] == 0
        assert report["imported"] == 0  # the number is the merged customer's, or (merge first) the survivor's alias
        assert report["updated"] == 1
        holders = db.fetch(
            "SELECT id FROM customer WHERE org_id = :org AND erp_customer_number = :n", org=org.id, n=number
        )
        assert holders == []
        alias = db.fetch(
            "SELECT customer_id FROM customer_erp_alias WHERE org_id = :org AND erp_customer_number = :n",
            org=org.id,
            n=number,
        )
        assert [row[0] for row in alias] == [uuid.UUID(survivor["id"])]
        names = {document(client, org, survivor["id"])["name"]}
        # the import's name landed on the merged customer (before the merge) or on the survivor (after it)
        assert names <= {f"Ziel {round_}", f"Importiert {round_}"}
