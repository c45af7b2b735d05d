"""The upsert (API.md §6): by ERP number in the caller's org, empty cells leave values, counts per customer."""

import httpx

from tests.conftest import Db, OrgContext, create_customer
from tests.customers.helpers import add_contact
from tests.imports.helpers import (
    HEADER,
    count_customers,
    csv_of,
    customer_by_erp,
    customer_row,
    import_ok,
    snapshot,
    warning,
)

COUNTS = ("rows", "imported", "updated", "unchanged", "failed", "contacts_created", "contacts_updated")


def counts(report: dict[str, object]) -> dict[str, object]:
    return {key: report[key] for key in COUNTS}


def test_a_second_import_of_the_same_file_changes_nothing_and_keeps_updated_at(
    client: httpx.Client, db: Db, org: OrgContext
) -> None:
    content = csv_of(
        [
            customer_row(
                "U-1",
                billing_street="Weg 1",
                billing_country="de",
                contact_email="a@u1.de",
                contact_is_primary="x",
                metadata_gruppe="A",
            ),
            customer_row("U-1", contact_email="b@u1.de", contact_name="Bea"),
            customer_row("U-2", name="Zwei AG", shipping_city="Linz", contact_email="a@u2.de"),
        ]
    )
    first = import_ok(client, org, content)
    before = snapshot(db, org)

    second = import_ok(client, org, content)

    assert counts(first) == {
        "rows": 3,
        "imported": 2,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
        "contacts_created": 3,
        "contacts_updated": 0,
    }
    assert counts(second) == {
        "rows": 3,
        "imported": 0,
        "updated": 0,
        "unchanged": 2,
        "failed": 0,
        "contacts_created": 0,
        "contacts_updated": 0,
    }
    assert snapshot(db, org) == before, "an unchanged customer is not written: same rows, same updated_at"


def test_a_changed_field_updates_the_customer_and_moves_updated_at(client: httpx.Client, org: OrgContext) -> None:
    created = create_customer(client, org, erp_customer_number="C-1", name="Alt GmbH")
    untouched = create_customer(client, org, erp_customer_number="C-2", name="Bleibt GmbH")

    report = import_ok(
        client, org, csv_of([customer_row("C-1", name="Neu GmbH"), customer_row("C-2", name="Bleibt GmbH")])
    )

    assert (report["updated"], report["unchanged"], report["imported"]) == (1, 1, 0)
    changed = customer_by_erp(client, org, "C-1")
    assert changed["id"] == created["id"]
    assert changed["name"] == "Neu GmbH"
    assert changed["updated_at"] > created["updated_at"]
    assert customer_by_erp(client, org, "C-2")["updated_at"] == untouched["updated_at"]


def test_empty_cells_leave_stored_values_and_addresses_merge_field_by_field(
    client: httpx.Client, org: OrgContext
) -> None:
    create_customer(
        client,
        org,
        erp_customer_number="E-1",
        billing_address={"street": "Musterstraße 1", "city": "München", "postal_code": "80331", "country": "DE"},
        metadata={"discount_group": "A", "score": 7},
    )
    content = (
        HEADER + ",billing_street,billing_city,billing_country,shipping_city,metadata_discount_group,metadata_neu\n"
    )
    content += ",E-1,,,,Augsburg,,,B,ja\n"

    report = import_ok(client, org, content)

    assert (report["updated"], report["failed"]) == (1, 0)
    customer = customer_by_erp(client, org, "E-1")
    assert (customer["name"], customer["default_currency"], customer["default_language"]) == (
        "Muster GmbH",
        "EUR",
        "de-DE",
    )
    assert customer["billing_address"] == {
        "street": "Musterstraße 1",
        "street2": None,
        "city": "Augsburg",
        "postal_code": "80331",
        "state": None,
        "country": "DE",
    }
    assert customer["shipping_address"] is None
    assert customer["metadata"] == {"discount_group": "B", "score": 7, "neu": "ja"}


def test_rows_of_one_erp_number_form_one_customer_the_last_non_empty_cell_wins(
    client: httpx.Client, org: OrgContext
) -> None:
    content = csv_of(
        [
            customer_row("D-1", name="Erst GmbH", billing_city="Bonn", contact_email="a@d.de"),  # line 2
            customer_row("D-1", name="", billing_city="", contact_email="b@d.de"),  # 3: empty is no value
            customer_row("D-1", name="Zuletzt GmbH", billing_city="", contact_email="c@d.de"),  # 4
            customer_row("D-2", contact_email="x@d2.de"),  # 5
            customer_row("D-2", contact_email="y@d2.de"),  # 6: the same values: no disagreement
        ]
    )

    report = import_ok(client, org, content)

    assert counts(report)["imported"] == 2
    assert report["contacts_created"] == 5
    assert report["warnings"] == [
        {
            "code": "DUPLICATE_ERP_NUMBER",
            "rows": [2, 4],
            "warning": "erp_customer_number D-1 on rows 2, 4 with different values (name): the last row wins",
        }
    ]
    customer = customer_by_erp(client, org, "D-1")
    assert customer["name"] == "Zuletzt GmbH"
    assert customer["billing_address"]["city"] == "Bonn"
    assert sorted(contact["email"] for contact in customer["contacts"]) == ["a@d.de", "b@d.de", "c@d.de"]


def test_disagreeing_contact_and_metadata_cells_are_warned_about(client: httpx.Client, org: OrgContext) -> None:
    content = csv_of(
        [
            customer_row("W-1", contact_email="a@w.de", contact_name="Anna", metadata_gruppe="A"),
            customer_row("W-1", contact_email="a@w.de", contact_name="Anne", metadata_gruppe="A"),
            customer_row("W-2", metadata_gruppe="A"),
            customer_row("W-2", metadata_gruppe="B"),
        ]
    )

    report = import_ok(client, org, content)

    duplicates = [w for w in report["warnings"] if w["code"] == "DUPLICATE_ERP_NUMBER"]
    assert [(w["rows"], w["warning"]) for w in duplicates] == [
        ([2, 3], "erp_customer_number W-1 on rows 2, 3 with different values (contact_name): the last row wins"),
        ([4, 5], "erp_customer_number W-2 on rows 4, 5 with different values (metadata_gruppe): the last row wins"),
    ]
    (contact,) = customer_by_erp(client, org, "W-1")["contacts"]
    assert contact["name"] == "Anne"
    assert customer_by_erp(client, org, "W-2")["metadata"] == {"gruppe": "B"}


def test_contacts_are_upserted_by_email_and_a_primary_switch_unmarks_the_previous_one(
    client: httpx.Client, org: OrgContext
) -> None:
    customer = create_customer(client, org, erp_customer_number="K-1")
    add_contact(client, org, customer["id"], email="alt@k.de", name="Alt", is_primary=True)
    add_contact(client, org, customer["id"], email="zweit@k.de", name="Zweit")
    content = csv_of(
        [
            customer_row("K-1", contact_email="NEU@k.de", contact_name="Neu", contact_is_primary="ja"),
            customer_row("K-1", contact_email="zweit@k.de", contact_name="", contact_is_primary=""),
        ]
    )

    report = import_ok(client, org, content)

    assert (report["updated"], report["contacts_created"], report["contacts_updated"]) == (1, 1, 1)
    contacts = customer_by_erp(client, org, "K-1")["contacts"]
    assert [(c["email"], c["name"], c["is_primary"]) for c in contacts] == [
        ("neu@k.de", "Neu", True),
        ("alt@k.de", "Alt", False),
        ("zweit@k.de", "Zweit", False),
    ]


def test_an_existing_contact_becomes_primary_and_false_unmarks(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, erp_customer_number="K-2")
    add_contact(client, org, customer["id"], email="a@k2.de", is_primary=True)
    add_contact(client, org, customer["id"], email="b@k2.de")
    add_contact(client, org, customer["id"], email="c@k2.de")

    report = import_ok(
        client,
        org,
        csv_of(
            [
                customer_row("K-2", contact_email="b@k2.de", contact_is_primary="1"),
                customer_row("K-2", contact_email="c@k2.de", contact_is_primary="0"),
            ]
        ),
    )

    assert (report["updated"], report["contacts_created"], report["contacts_updated"]) == (1, 0, 2)
    primaries = [c["email"] for c in customer_by_erp(client, org, "K-2")["contacts"] if c["is_primary"]]
    assert primaries == ["b@k2.de"]

    again = import_ok(client, org, csv_of([customer_row("K-2", contact_email="b@k2.de", contact_is_primary="nein")]))
    assert (again["updated"], again["contacts_updated"]) == (1, 1)
    assert not any(c["is_primary"] for c in customer_by_erp(client, org, "K-2")["contacts"])


def test_two_primaries_in_the_file_for_one_customer_the_last_wins_and_is_warned(
    client: httpx.Client, org: OrgContext
) -> None:
    content = csv_of(
        [
            customer_row("K-3", contact_email="a@k3.de", contact_is_primary="ja"),
            customer_row("K-3", contact_email="b@k3.de", contact_is_primary="ja"),
        ]
    )

    report = import_ok(client, org, content)

    assert report["failed"] == 0
    assert [(c["email"], c["is_primary"]) for c in customer_by_erp(client, org, "K-3")["contacts"]] == [
        ("b@k3.de", True),
        ("a@k3.de", False),
    ]
    duplicate = warning(report, "DUPLICATE_ERP_NUMBER")
    assert duplicate is not None
    assert duplicate["rows"] == [2, 3]
    assert "contact_is_primary" in duplicate["warning"]


def test_an_empty_primary_cell_leaves_the_flag_and_new_contacts_are_not_primary(
    client: httpx.Client, org: OrgContext
) -> None:
    customer = create_customer(client, org, erp_customer_number="K-4")
    add_contact(client, org, customer["id"], email="a@k4.de", is_primary=True)

    report = import_ok(
        client,
        org,
        csv_of(
            [
                customer_row("K-4", contact_email="a@k4.de", contact_is_primary=""),
                customer_row("K-4", contact_email="n@k4.de"),
            ]
        ),
    )

    assert (report["updated"], report["contacts_created"], report["contacts_updated"]) == (1, 1, 0)
    assert [(c["email"], c["is_primary"]) for c in customer_by_erp(client, org, "K-4")["contacts"]] == [
        ("a@k4.de", True),
        ("n@k4.de", False),
    ]


def test_rows_without_erp_number_are_always_new_customers_with_one_warning(
    client: httpx.Client, db: Db, org: OrgContext
) -> None:
    content = csv_of(
        [
            customer_row(None, name="Ohne A", contact_email="a@o.de"),
            customer_row("O-1"),
            customer_row(None, name="Ohne B"),
        ]
    )

    first = import_ok(client, org, content)
    second = import_ok(client, org, content)

    assert (first["imported"], second["imported"], second["unchanged"]) == (3, 2, 1)
    missing = warning(second, "MISSING_ERP_NUMBER")
    assert missing is not None
    assert missing["rows"] == [2, 4]
    assert count_customers(db, org) == 5


def test_an_import_touches_only_the_callers_org(
    client: httpx.Client, db: Db, org: OrgContext, other_org: OrgContext
) -> None:
    theirs = create_customer(client, other_org, erp_customer_number="X-1", name="Fremd GmbH")
    their_rows = snapshot(db, other_org)

    report = import_ok(client, org, csv_of([customer_row("X-1", name="Meins GmbH", contact_email="m@x.de")]))

    assert (report["imported"], report["updated"]) == (1, 0)
    assert customer_by_erp(client, org, "X-1")["name"] == "Meins GmbH"
    assert customer_by_erp(client, other_org, "X-1")["id"] == theirs["id"]
    assert snapshot(db, other_org) == their_rows


def test_erp_numbers_are_compared_exactly(client: httpx.Client, org: OrgContext) -> None:
    create_customer(client, org, erp_customer_number="abc-1")

    report = import_ok(client, org, csv_of([customer_row("ABC-1"), customer_row(" abc-1 ")]))

    assert (report["imported"], report["unchanged"]) == (1, 1)


def test_contact_emails_are_normalised_before_they_are_matched(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org, erp_customer_number="NM-1")
    add_contact(client, org, customer["id"], email="einkauf@muster.de", name="Max", is_primary=True)

    report = import_ok(
        client,
        org,
        csv_of(
            [
                customer_row("NM-1", contact_email="  Einkauf@MUSTER.de ", contact_name="Max"),
                customer_row("NM-1", contact_email="neu@Müller.DE"),
                customer_row("NM-1", contact_email="einkauf@@muster.de"),
            ]
        ),
    )

    assert (report["unchanged"], report["updated"], report["contacts_created"], report["failed"]) == (0, 1, 1, 1)
    assert [(e["row"], e["field"], e["value"]) for e in report["errors"]] == [
        (4, "contact_email", "einkauf@@muster.de")
    ]
    emails = [contact["email"] for contact in customer_by_erp(client, org, "NM-1")["contacts"]]
    assert emails == ["einkauf@muster.de", "neu@müller.de"]


def test_a_non_string_metadata_value_given_as_text_becomes_that_text(client: httpx.Client, org: OrgContext) -> None:
    create_customer(client, org, erp_customer_number="NS-1", metadata={"score": 7, "flag": True, "keep": [1]})

    same_text = import_ok(client, org, csv_of([customer_row("NS-1", metadata_score="7")]))

    assert (same_text["updated"], same_text["unchanged"]) == (1, 0)
    assert customer_by_erp(client, org, "NS-1")["metadata"] == {"score": "7", "flag": True, "keep": [1]}
    again = import_ok(client, org, csv_of([customer_row("NS-1", metadata_score="7")]))
    assert (again["updated"], again["unchanged"]) == (0, 1)
