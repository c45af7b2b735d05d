"""Detection after merges (API.md §7, §12): an ERP alias finds the survivor, a tombstone is never a candidate.

Merge states are made in SQL, as a merge leaves them (see tests/imports/test_merged_customers.py).
"""

from typing import Any

import httpx

from tests.conftest import Db, OrgContext, make_org
from tests.detection.helpers import add_customer, detect, signals_of, unique_domain
from tests.imports.test_merged_customers import merge_in_sql


def candidate_ids(result: dict[str, Any]) -> list[str]:
    return [c["customer_id"] for c in result["candidates"]]


def bring_back(db: Db, org: OrgContext, customer_id: str) -> None:
    """An undo's part that detection sees: the tombstone a customer again."""
    db.execute("UPDATE customer SET merged_into = NULL WHERE org_id = :org AND id = :id", org=org.id, id=customer_id)


def test_a_customer_number_that_is_an_alias_finds_the_survivor(client: httpx.Client, db: Db, org: OrgContext) -> None:
    survivor = add_customer(client, org, "Hauptkunde Nord GmbH", erp="K-1000")
    merged = add_customer(client, org, "Nebenkunde Süd AG", erp="K-2000")
    merge_in_sql(db, org, survivor, [merged])

    in_text = detect(client, org, document_text="Bestellung\nKundennr: K-2000\nBitte liefern Sie")
    assert in_text["status"] == "AUTO_SELECTED"
    assert in_text["selected_customer_id"] == survivor
    (candidate,) = in_text["candidates"]
    assert candidate["erp_customer_number"] == "K-1000"
    assert signals_of(candidate) == [("S4_CUSTOMER_NUMBER", 0.98, "K-2000")]

    by_hint = detect(client, org, customer_hint={"erp_customer_number": "K-2000"})
    assert (by_hint["status"], by_hint["selected_customer_id"]) == ("AUTO_SELECTED", survivor)
    assert signals_of(by_hint["candidates"][0]) == [("S4_CUSTOMER_NUMBER", 0.98, "K-2000")]

    own = detect(client, org, customer_hint={"erp_customer_number": "K-1000"})
    assert signals_of(own["candidates"][0]) == [("S4_CUSTOMER_NUMBER", 0.98, "K-1000")]


def test_the_own_number_and_an_alias_in_one_text_are_one_signal(client: httpx.Client, db: Db, org: OrgContext) -> None:
    survivor = add_customer(client, org, "Hauptkunde Nord GmbH", erp="K-1000")
    first = add_customer(client, org, "Erster Kunde", erp="K-2000")
    second = add_customer(client, org, "Zweiter Kunde", erp="K-3000")
    merge_in_sql(db, org, survivor, [first, second])

    result = detect(
        client,
        org,
        document_text="Kundennr: K-3000\nKd.-Nr. K-1000\nDebitor K-2000",
        customer_hint={"erp_customer_number": "K-2000"},
    )

    (candidate,) = result["candidates"]
    assert candidate["customer_id"] == survivor
    assert signals_of(candidate) == [("S4_CUSTOMER_NUMBER", 0.98, "K-3000")], "the number found first"
    assert result["status"] == "AUTO_SELECTED"


def test_an_alias_and_another_customers_number_are_ambiguous(client: httpx.Client, db: Db, org: OrgContext) -> None:
    survivor = add_customer(client, org, "Hauptkunde Nord GmbH", erp="K-1000")
    merged = add_customer(client, org, "Nebenkunde Süd AG", erp="K-2000")
    other = add_customer(client, org, "Dritter Kunde", erp="K-4000")
    merge_in_sql(db, org, survivor, [merged])

    result = detect(client, org, document_text="Kundennr: K-2000\nKundennr: K-4000")

    assert result["status"] == "AMBIGUOUS"
    assert sorted(candidate_ids(result)) == sorted([survivor, other])


def test_a_tombstone_is_never_a_candidate(client: httpx.Client, db: Db, org: OrgContext) -> None:
    domain = unique_domain()
    survivor = add_customer(client, org, "Hauptkunde Nord GmbH", erp="K-1000", emails=(f"einkauf@{domain}",))
    merged = add_customer(client, org, "Grabstein Spedition KG", erp="K-2000", emails=(f"lager@{domain}",))
    before = detect(client, org, from_email=f"lager@{domain}", customer_hint={"name": "Grabstein Spedition"})
    assert merged in candidate_ids(before)  # the org's names are loaded, the tombstone-to-be among them

    merge_in_sql(db, org, survivor, [merged])

    for body in (
        {"customer_hint": {"name": "Grabstein Spedition KG"}},
        {"document_text": "Grabstein Spedition KG\nKundennr: K-2000"},
        {"customer_hint": {"erp_customer_number": "K-2000"}},
        {"from_email": f"lager@{domain}"},
        {"from_email": f"wer@{domain}", "customer_hint": {"name": "Grabstein Spedition"}},
    ):
        result = detect(client, org, **body)
        assert merged not in candidate_ids(result), body
    sender = detect(client, org, from_email=f"lager@{domain}")
    assert (sender["status"], sender["selected_customer_id"]) == ("AUTO_SELECTED", survivor), "its contact moved"


def test_the_name_index_drops_a_merged_name_and_takes_it_back(client: httpx.Client, db: Db, org: OrgContext) -> None:
    def found(name: str) -> list[str]:
        return candidate_ids(detect(client, org, customer_hint={"name": name}))

    survivor = add_customer(client, org, "Hauptkunde Nord GmbH", erp="K-1000")
    merged = add_customer(client, org, "Grabstein Spedition KG", erp="K-2000")
    assert found("Grabstein Spedition") == [merged]  # loads the org

    merge_in_sql(db, org, survivor, [merged])
    assert found("Grabstein Spedition") == [], "caught up: merged away"
    assert found("Hauptkunde Nord") == [survivor]

    bring_back(db, org, merged)
    assert found("Grabstein Spedition") == [merged], "caught up: brought back"


def test_a_fresh_load_of_the_names_leaves_tombstones_out(client: httpx.Client, db: Db) -> None:
    org = make_org(db)  # never detected in: the first detection loads its names
    survivor = add_customer(client, org, "Hauptkunde Nord GmbH", erp="K-1000")
    merged = add_customer(client, org, "Grabstein Spedition KG", erp="K-2000")
    merge_in_sql(db, org, survivor, [merged])

    result = detect(client, org, customer_hint={"name": "Grabstein Spedition"})

    assert result["status"] == "NOT_FOUND"
    assert candidate_ids(detect(client, org, customer_hint={"name": "Hauptkunde Nord"})) == [survivor]
