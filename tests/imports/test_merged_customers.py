"""Import and export after merges (API.md §12): an ERP alias updates the survivor, tombstones stay out.

Merge states are made in SQL, as a merge leaves them: the merged customer's contacts moved to the
survivor, the merged customer a tombstone (`merged_into` set, no ERP number), its number one of the
survivor's `erp_aliases`.
"""

import csv
import io
import uuid
from typing import Any

import httpx

from tests.conftest import Db, OrgContext, create_customer
from tests.imports.helpers import count_customers, csv_of, customer_row, import_ok, snapshot, warning

COUNTS = ("rows", "imported", "updated", "unchanged", "failed", "contacts_created", "contacts_updated")


def counts(report: dict[str, Any]) -> dict[str, Any]:
    return {key: report[key] for key in COUNTS}


def merge_in_sql(db: Db, org: OrgContext, survivor_id: str, merged_ids: list[str]) -> None:
    """The merged customers' contacts moved to the survivor, they become tombstones, their numbers its aliases."""
    numbers = [
        row.erp_customer_number
        for row in db.fetch(
            "SELECT erp_customer_number FROM customer WHERE org_id = :org AND id = ANY(CAST(:ids AS uuid[]))"
            " ORDER BY array_position(CAST(:ids AS uuid[]), id)",
            org=org.id,
            ids=merged_ids,
        )
    ]
    db.execute(
        "UPDATE customer_contact SET customer_id = :survivor, is_primary = false"
        " WHERE org_id = :org AND customer_id = ANY(CAST(:ids AS uuid[]))",
        org=org.id,
        survivor=survivor_id,
        ids=merged_ids,
    )
    db.execute(
        "UPDATE customer SET merged_into = :survivor, erp_customer_number = NULL"
        " WHERE org_id = :org AND id = ANY(CAST(:ids AS uuid[]))",
        org=org.id,
        survivor=survivor_id,
        ids=merged_ids,
    )
    db.execute(
        "UPDATE customer SET erp_aliases = erp_aliases || CAST(:numbers AS text[]) WHERE org_id = :org AND id = :id",
        org=org.id,
        id=survivor_id,
        numbers=numbers,
    )


def customer_row_of(db: Db, org: OrgContext, customer_id: str) -> Any:
    (row,) = db.fetch(
        "SELECT c.*, c::text AS whole FROM customer c WHERE org_id = :org AND id = :id", org=org.id, id=customer_id
    )
    return row


def contacts_of(db: Db, org: OrgContext, customer_id: str) -> dict[str, tuple[str | None, bool]]:
    rows = db.fetch(
        "SELECT email::text AS email, name, is_primary FROM customer_contact WHERE org_id = :org AND customer_id = :id",
        org=org.id,
        id=customer_id,
    )
    return {row.email: (row.name, row.is_primary) for row in rows}


def history_of(db: Db, org: OrgContext, customer_id: str) -> list[Any]:
    return db.fetch(
        "SELECT e.type, e.before, e.after, t.source, t.import_id FROM change_entry e"
        " JOIN change_transaction t ON t.org_id = e.org_id AND t.txid = e.txid"
        " WHERE e.org_id = :org AND e.customer_id = :id AND e.contact_id IS NULL ORDER BY e.position",
        org=org.id,
        id=customer_id,
    )


def merged_pair(client: httpx.Client, db: Db, org: OrgContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """Survivor S-100 (contact a@s.de, primary) with M-200 (contact m@m.de) merged into it."""
    survivor = create_customer(
        client,
        org,
        name="Überlebende GmbH",
        erp_customer_number="S-100",
        metadata={"gruppe": "A"},
        contacts=[{"email": "a@s.de", "name": "Anna", "is_primary": True}],
    )
    merged = create_customer(
        client,
        org,
        name="Verschmolzen AG",
        erp_customer_number="M-200",
        contacts=[{"email": "m@m.de", "name": "Max", "is_primary": True}],
    )
    merge_in_sql(db, org, survivor["id"], [merged["id"]])
    return survivor, merged


# --- import ---------------------------------------------------------------------------------------


def test_a_row_with_an_alias_updates_the_survivor_and_keeps_its_number(
    client: httpx.Client, db: Db, org: OrgContext
) -> None:
    survivor, merged = merged_pair(client, db, org)
    tombstone_before = customer_row_of(db, org, merged["id"]).whole
    survivor_before = customer_row_of(db, org, survivor["id"])

    report = import_ok(
        client,
        org,
        csv_of(
            [
                customer_row(
                    "M-200",
                    name="",
                    default_currency="",
                    default_language="",
                    billing_city="Bonn",
                    metadata_zahlung="30 Tage",
                    contact_email="neu@s.de",
                    contact_name="Nina",
                    contact_is_primary="ja",
                ),
                customer_row(
                    "M-200",
                    name="",
                    default_currency="",
                    default_language="",
                    contact_email="m@m.de",
                    contact_name="Moritz",
                ),
            ]
        ),
    )

    assert counts(report) == {
        "rows": 2,
        "imported": 0,
        "updated": 1,
        "unchanged": 0,
        "failed": 0,
        "contacts_created": 1,
        "contacts_updated": 2,  # Max renamed; Anna no longer primary
    }
    assert report["errors"] == []
    assert warning(report, "DUPLICATE_ERP_NUMBER") is None
    after = customer_row_of(db, org, survivor["id"])
    assert after.erp_customer_number == "S-100", "the alias is not written into the survivor's number"
    assert after.erp_aliases == ["M-200"]
    assert after.name == "Überlebende GmbH"
    assert after.billing_address_json["city"] == "Bonn"
    assert after.billing_address_json["street"] == survivor_before.billing_address_json["street"]
    assert after.metadata_json == {"gruppe": "A", "zahlung": "30 Tage"}
    assert after.updated_at > survivor_before.updated_at
    assert contacts_of(db, org, survivor["id"]) == {
        "a@s.de": ("Anna", False),
        "m@m.de": ("Moritz", False),
        "neu@s.de": ("Nina", True),
    }
    assert customer_row_of(db, org, merged["id"]).whole == tombstone_before, "the tombstone is not touched"
    assert contacts_of(db, org, merged["id"]) == {}
    assert count_customers(db, org) == 2

    latest = history_of(db, org, survivor["id"])[-1]
    assert (latest.type, latest.source, str(latest.import_id)) == ("customer.updated", "import", report["import_id"])
    assert latest.after["billing_address"]["city"] == "Bonn"
    assert latest.after["erp_customer_number"] == "S-100"
    assert all(entry.type != "customer.updated" for entry in history_of(db, org, merged["id"]))


def test_an_alias_row_that_changes_nothing_leaves_the_survivor_unchanged(
    client: httpx.Client, db: Db, org: OrgContext
) -> None:
    survivor, _ = merged_pair(client, db, org)
    before = snapshot(db, org)

    report = import_ok(
        client,
        org,
        csv_of([customer_row("M-200", name="Überlebende GmbH", contact_email="m@m.de", metadata_gruppe="A")]),
    )

    assert counts(report) == {
        "rows": 1,
        "imported": 0,
        "updated": 0,
        "unchanged": 1,
        "failed": 0,
        "contacts_created": 0,
        "contacts_updated": 0,
    }
    assert snapshot(db, org) == before
    assert customer_row_of(db, org, survivor["id"]).erp_customer_number == "S-100"


def test_rows_of_the_survivors_number_and_its_alias_make_one_customer(
    client: httpx.Client, db: Db, org: OrgContext
) -> None:
    survivor, merged = merged_pair(client, db, org)
    rows = [
        customer_row("S-100", name="", billing_city="Köln", contact_email="x@s.de", contact_name="Xaver"),
        customer_row("M-200", name="", billing_city="Bonn", contact_email="x@s.de", contact_name="Xenia",
                     metadata_gruppe="B"),
        customer_row("S-100", name="", shipping_city="Linz", contact_email="y@s.de", contact_is_primary="true"),
        customer_row("M-200", name="", contact_email="m@m.de", contact_is_primary="true"),
    ]  # fmt: skip

    report = import_ok(client, org, csv_of(rows))

    assert counts(report) == {
        "rows": 4,
        "imported": 0,
        "updated": 1,
        "unchanged": 0,
        "failed": 0,
        "contacts_created": 2,  # x@s.de (both rows), y@s.de
        "contacts_updated": 2,  # a@s.de un-marked, m@m.de marked primary
    }
    after = customer_row_of(db, org, survivor["id"])
    assert (after.erp_customer_number, after.erp_aliases) == ("S-100", ["M-200"])
    assert after.billing_address_json["city"] == "Bonn", "the last non-empty cell in row order wins"
    assert after.shipping_address_json["city"] == "Linz"
    assert after.metadata_json == {"gruppe": "B"}
    contacts = contacts_of(db, org, survivor["id"])
    assert contacts == {
        "a@s.de": ("Anna", False),
        "m@m.de": ("Max", True),
        "x@s.de": ("Xenia", False),
        "y@s.de": (None, False),
    }
    assert contacts_of(db, org, merged["id"]) == {}
    duplicate = warning(report, "DUPLICATE_ERP_NUMBER")
    assert duplicate is not None
    assert duplicate["rows"] == [2, 3, 4, 5]  # billing_city, contact_name, and two contacts marked primary
    assert "S-100, M-200" in duplicate["warning"]
    assert [entry.type for entry in history_of(db, org, survivor["id"])][-1] == "customer.updated"

    # The same rows the other way round: the other cells win, and still one customer.
    again = import_ok(client, org, csv_of(rows[::-1]))
    assert (again["updated"], again["unchanged"], again["imported"]) == (1, 0, 0)
    after = customer_row_of(db, org, survivor["id"])
    assert after.billing_address_json["city"] == "Köln"
    assert contacts_of(db, org, survivor["id"])["x@s.de"] == ("Xaver", False)
    assert contacts_of(db, org, survivor["id"])["y@s.de"] == (None, True)
    assert count_customers(db, org) == 2


def test_rows_of_two_aliases_of_one_survivor_make_one_customer(client: httpx.Client, db: Db, org: OrgContext) -> None:
    survivor = create_customer(client, org, name="Ziel GmbH", erp_customer_number="Z-1", contacts=[])
    first = create_customer(client, org, name="Eins", erp_customer_number="E-1", contacts=[])
    second = create_customer(client, org, name="Zwei", erp_customer_number="E-2", contacts=[])
    merge_in_sql(db, org, survivor["id"], [first["id"], second["id"]])
    other = create_customer(client, org, name="Andere GmbH", erp_customer_number="A-1", contacts=[])

    report = import_ok(
        client,
        org,
        csv_of(
            [
                customer_row("E-2", name="Ziel Neu GmbH", default_language="en"),
                customer_row("E-1", name="", default_currency="", default_language="", contact_email="e@ziel.de"),
                customer_row("A-1", name="Andere Neu GmbH"),
                customer_row(
                    "E-2",
                    name="",
                    default_currency="",
                    default_language="",
                    contact_email="e@ziel.de",
                    contact_name="Ede",
                ),
                customer_row("N-1", name="Neu KG"),
            ]
        ),
    )

    assert counts(report) == {
        "rows": 5,
        "imported": 1,
        "updated": 2,
        "unchanged": 0,
        "failed": 0,
        "contacts_created": 1,
        "contacts_updated": 0,
    }
    after = customer_row_of(db, org, survivor["id"])
    assert (after.name, after.default_language, after.erp_customer_number) == ("Ziel Neu GmbH", "en", "Z-1")
    assert after.erp_aliases == ["E-1", "E-2"]
    assert contacts_of(db, org, survivor["id"]) == {"e@ziel.de": ("Ede", False)}
    assert customer_row_of(db, org, other["id"]).name == "Andere Neu GmbH"
    assert count_customers(db, org) == 5
    assert warning(report, "DUPLICATE_ERP_NUMBER") is None


def test_a_dry_run_with_an_alias_counts_like_the_real_run_and_writes_nothing(
    client: httpx.Client, db: Db, org: OrgContext
) -> None:
    merged_pair(client, db, org)
    content = csv_of(
        [
            customer_row("M-200", name="", billing_city="Bonn", contact_email="neu@s.de"),
            customer_row("S-100", name="", shipping_city="Linz"),
        ]
    )
    before = snapshot(db, org)

    dry = import_ok(client, org, content, dry_run=True)

    assert snapshot(db, org) == before
    real = import_ok(client, org, content)
    assert dry["dry_run"]
    assert not real["dry_run"]
    assert (
        counts(dry)
        == counts(real)
        == {
            "rows": 2,
            "imported": 0,
            "updated": 1,
            "unchanged": 0,
            "failed": 0,
            "contacts_created": 1,
            "contacts_updated": 0,
        }
    )


def test_a_tombstone_is_never_matched_nor_written(client: httpx.Client, db: Db, org: OrgContext) -> None:
    survivor, merged = merged_pair(client, db, org)
    tombstone_before = customer_row_of(db, org, merged["id"]).whole

    # The tombstone's name and old contact, a new number, and the alias: nothing reaches the tombstone.
    report = import_ok(
        client,
        org,
        csv_of(
            [
                customer_row("NEU-1", name="Verschmolzen AG", contact_email="m@m.de"),
                customer_row("M-200", name="", contact_email="m@m.de", contact_name="Max"),
            ]
        ),
    )

    assert (report["imported"], report["updated"], report["unchanged"], report["failed"]) == (1, 0, 1, 0)
    assert customer_row_of(db, org, merged["id"]).whole == tombstone_before
    assert contacts_of(db, org, merged["id"]) == {}
    (new,) = db.fetch("SELECT id FROM customer WHERE org_id = :org AND erp_customer_number = 'NEU-1'", org=org.id)
    assert new.id not in {uuid.UUID(survivor["id"]), uuid.UUID(merged["id"])}


# --- export ---------------------------------------------------------------------------------------


def test_the_export_leaves_tombstones_out_and_lists_the_survivor_once(
    client: httpx.Client, db: Db, org: OrgContext
) -> None:
    survivor, _ = merged_pair(client, db, org)
    db.execute(
        "UPDATE customer SET metadata_json = CAST(:meta AS jsonb) WHERE org_id = :org AND merged_into IS NOT NULL",
        org=org.id,
        meta='{"nur_im_grab": "x"}',
    )
    create_customer(client, org, name="Andere GmbH", erp_customer_number="A-1", metadata={}, contacts=[])

    response = client.get("/api/v1/exports/customers.csv", headers=org.headers())

    assert response.status_code == 200, response.text
    reader = csv.DictReader(io.StringIO(response.text, newline=""))
    rows = list(reader)
    assert reader.fieldnames is not None
    assert "metadata_nur_im_grab" not in reader.fieldnames, "a tombstone's metadata keys are no columns"
    assert not any("alias" in column for column in reader.fieldnames)
    assert [(row["name"], row["erp_customer_number"], row["contact_email"]) for row in rows] == [
        ("Andere GmbH", "A-1", ""),
        ("Überlebende GmbH", "S-100", "a@s.de"),
        ("Überlebende GmbH", "S-100", "m@m.de"),
    ]
    assert "Verschmolzen" not in response.text
    assert "M-200" not in response.text

    # Imported again: the survivor is unchanged, nothing is created.
    again = import_ok(client, org, response.text)
    assert (again["imported"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert customer_row_of(db, org, survivor["id"]).erp_customer_number == "S-100"
