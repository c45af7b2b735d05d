"""The database itself holds the rules (DESIGN.md decisions 1–5): rows that break them are refused."""

import uuid

import pytest
from sqlalchemy.exc import IntegrityError

from tests.conftest import Db, OrgContext


def insert_customer(db: Db, org: OrgContext, erp: str | None = None, name: str = "Muster GmbH") -> uuid.UUID:
    customer_id = uuid.uuid4()
    db.execute(
        "INSERT INTO customer (id, org_id, name, erp_customer_number, default_currency, default_language)"
        " VALUES (:id, :org_id, :name, :erp, 'EUR', 'de-DE')",
        id=customer_id,
        org_id=org.id,
        name=name,
        erp=erp,
    )
    return customer_id


def insert_contact(
    db: Db, org_id: uuid.UUID, customer_id: uuid.UUID, email: str, is_primary: bool = False
) -> uuid.UUID:
    contact_id = uuid.uuid4()
    db.execute(
        "INSERT INTO customer_contact (id, org_id, customer_id, email, is_primary)"
        " VALUES (:id, :org_id, :customer_id, :email, :is_primary)",
        id=contact_id,
        org_id=org_id,
        customer_id=customer_id,
        email=email,
        is_primary=is_primary,
    )
    return contact_id


def updated_at(db: Db, table: str, row_id: uuid.UUID) -> object:
    return db.fetch(f"SELECT updated_at FROM {table} WHERE id = :id", id=row_id)[0].updated_at


def test_an_erp_number_is_unique_within_an_org(db: Db, org: OrgContext) -> None:
    insert_customer(db, org, erp="4711")

    with pytest.raises(IntegrityError, match="uq_customer_org_erp"):
        insert_customer(db, org, erp="4711")


def test_the_same_erp_number_in_two_orgs_and_two_null_numbers_are_allowed(
    db: Db, org: OrgContext, other_org: OrgContext
) -> None:
    insert_customer(db, org, erp="4711")
    insert_customer(db, other_org, erp="4711")
    insert_customer(db, org, erp="4711a")
    insert_customer(db, org, erp=None)
    insert_customer(db, org, erp=None)

    assert len(db.fetch("SELECT id FROM customer WHERE org_id = :o AND erp_customer_number IS NULL", o=org.id)) == 2


def test_an_update_onto_a_taken_erp_number_is_refused(db: Db, org: OrgContext) -> None:
    insert_customer(db, org, erp="1")
    second = insert_customer(db, org, erp="2")

    with pytest.raises(IntegrityError, match="uq_customer_org_erp"):
        db.execute("UPDATE customer SET erp_customer_number = '1' WHERE id = :id", id=second)


@pytest.mark.parametrize("second", ["einkauf@muster.de", "EINKAUF@MUSTER.DE", "Einkauf@Muster.de"])
def test_a_contact_email_is_unique_per_customer_ignoring_case(db: Db, org: OrgContext, second: str) -> None:
    customer = insert_customer(db, org)
    insert_contact(db, org.id, customer, "einkauf@muster.de")

    with pytest.raises(IntegrityError, match="uq_contact_customer_email"):
        insert_contact(db, org.id, customer, second)


def test_the_same_contact_email_on_two_customers_is_allowed(db: Db, org: OrgContext) -> None:
    one = insert_customer(db, org, erp="1")
    two = insert_customer(db, org, erp="2")
    insert_contact(db, org.id, one, "einkauf@muster.de", is_primary=True)
    insert_contact(db, org.id, two, "EINKAUF@muster.de", is_primary=True)


def test_a_customer_has_at_most_one_primary_contact(db: Db, org: OrgContext) -> None:
    customer = insert_customer(db, org)
    insert_contact(db, org.id, customer, "a@muster.de", is_primary=True)
    insert_contact(db, org.id, customer, "b@muster.de", is_primary=False)
    insert_contact(db, org.id, customer, "c@muster.de", is_primary=False)

    with pytest.raises(IntegrityError, match="uq_contact_one_primary"):
        insert_contact(db, org.id, customer, "d@muster.de", is_primary=True)
    with pytest.raises(IntegrityError, match="uq_contact_one_primary"):
        db.execute(
            "UPDATE customer_contact SET is_primary = true WHERE customer_id = :id AND email = 'b@muster.de'",
            id=customer,
        )


def test_is_primary_is_not_null(db: Db, org: OrgContext) -> None:
    customer = insert_customer(db, org)
    with pytest.raises(IntegrityError, match="is_primary"):
        db.execute(
            "INSERT INTO customer_contact (org_id, customer_id, email, is_primary) VALUES (:o, :c, 'a@b.de', NULL)",
            o=org.id,
            c=customer,
        )


def test_a_contact_must_belong_to_its_customers_org(db: Db, org: OrgContext, other_org: OrgContext) -> None:
    customer = insert_customer(db, org)

    with pytest.raises(IntegrityError, match="fk_customer_contact_customer"):
        insert_contact(db, other_org.id, customer, "a@muster.de")
    contact = insert_contact(db, org.id, customer, "a@muster.de")
    with pytest.raises(IntegrityError, match="fk_customer_contact_customer"):
        db.execute("UPDATE customer_contact SET org_id = :o WHERE id = :id", o=other_org.id, id=contact)


def test_a_contact_needs_an_existing_customer(db: Db, org: OrgContext) -> None:
    with pytest.raises(IntegrityError, match="fk_customer_contact_customer"):
        insert_contact(db, org.id, uuid.uuid4(), "a@muster.de")


def test_deleting_a_customer_deletes_its_contacts(db: Db, org: OrgContext) -> None:
    customer = insert_customer(db, org, erp="1")
    kept = insert_customer(db, org, erp="2")
    insert_contact(db, org.id, customer, "a@muster.de", is_primary=True)
    insert_contact(db, org.id, customer, "b@muster.de")
    insert_contact(db, org.id, kept, "a@muster.de")

    db.execute("DELETE FROM customer WHERE id = :id", id=customer)

    assert db.fetch("SELECT id FROM customer_contact WHERE customer_id = :id", id=customer) == []
    assert len(db.fetch("SELECT id FROM customer_contact WHERE customer_id = :id", id=kept)) == 1


def test_updated_at_moves_on_a_real_change_only(db: Db, org: OrgContext) -> None:
    customer = insert_customer(db, org, erp="1")
    created = updated_at(db, "customer", customer)

    db.execute("UPDATE customer SET name = name, erp_customer_number = '1' WHERE id = :id", id=customer)
    assert updated_at(db, "customer", customer) == created

    db.execute("UPDATE customer SET name = 'Neu GmbH' WHERE id = :id", id=customer)
    changed = updated_at(db, "customer", customer)
    assert changed > created  # type: ignore[operator]

    db.execute("UPDATE customer SET name = 'Neu GmbH' WHERE id = :id", id=customer)
    assert updated_at(db, "customer", customer) == changed


def test_contact_updated_at_moves_on_a_real_change_only(db: Db, org: OrgContext) -> None:
    customer = insert_customer(db, org)
    contact = insert_contact(db, org.id, customer, "a@muster.de")
    created = updated_at(db, "customer_contact", contact)

    db.execute("UPDATE customer_contact SET is_primary = false WHERE id = :id", id=contact)
    assert updated_at(db, "customer_contact", contact) == created

    db.execute("UPDATE customer_contact SET is_primary = true WHERE id = :id", id=contact)
    assert updated_at(db, "customer_contact", contact) > created  # type: ignore[operator]
