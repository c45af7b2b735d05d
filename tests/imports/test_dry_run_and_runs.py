"""Dry runs (identical report, nothing written) and the record of imports at GET /api/v1/imports."""

import httpx

from customer_master.auth.models import Role
from tests.conftest import Db, OrgContext, assert_error, create_customer
from tests.customers.helpers import add_contact
from tests.imports.helpers import csv_of, customer_row, import_ok, snapshot

MIXED = csv_of(
    [
        customer_row("DR-1", name="Geändert GmbH", contact_email="neu@dr1.de", contact_is_primary="ja"),
        customer_row("DR-2", default_currency="EUR"),
        customer_row("DR-3", default_currency="XXX1"),
        customer_row(None, name="Ohne Nummer"),
        customer_row("DR-4", name="Neu A", metadata_x="1", phone="0"),
        customer_row("DR-4", name="Neu B", metadata_x="1", phone="0"),
    ]
)


def test_a_dry_run_reports_exactly_what_the_real_run_does_and_writes_nothing(
    client: httpx.Client, db: Db, org: OrgContext
) -> None:
    existing = create_customer(client, org, erp_customer_number="DR-1", name="Alt GmbH")
    add_contact(client, org, existing["id"], email="alt@dr1.de", is_primary=True)
    create_customer(client, org, erp_customer_number="DR-2")
    before = snapshot(db, org)

    dry = import_ok(client, org, MIXED, dry_run=True)

    assert snapshot(db, org) == before, "a dry run writes nothing"
    real = import_ok(client, org, MIXED, dry_run=False)
    assert dry["dry_run"] is True
    assert real["dry_run"] is False
    assert {**dry, "dry_run": False, "import_id": real["import_id"]} == real
    assert (real["imported"], real["updated"], real["unchanged"], real["failed"]) == (2, 1, 1, 1)
    assert (real["contacts_created"], real["contacts_updated"]) == (1, 1)
    assert snapshot(db, org) != before


def test_every_read_import_is_recorded_newest_first(client: httpx.Client, org: OrgContext) -> None:
    import_ok(client, org, MIXED, dry_run=True, filename="erste.csv")
    import_ok(client, org, MIXED, role=Role.INTEGRATOR, filename="zweite.csv")
    bad = client.post(
        "/api/v1/imports/customers", files={"file": ("kaputt.csv", b"", "text/csv")}, headers=org.headers()
    )
    assert_error(bad, 422, "VALIDATION_ERROR")

    response = client.get("/api/v1/imports", headers=org.headers(Role.INTEGRATOR))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    second, first = body["items"]
    assert set(first) == {
        "id", "created_at", "source", "user_email", "token_name", "file_name", "dry_run",
        "rows", "imported", "updated", "unchanged", "failed",
    }  # fmt: skip
    assert (first["file_name"], first["dry_run"], first["source"]) == ("erste.csv", True, "api")
    assert (second["file_name"], second["dry_run"]) == ("zweite.csv", False)
    assert (first["token_name"], second["token_name"]) == ("test-admin", "test-integrator")
    assert first["user_email"] is None
    assert (second["rows"], second["imported"], second["failed"]) == (6, 4, 1)
    assert second["created_at"] > first["created_at"]


def test_a_login_user_is_recorded_by_email(client: httpx.Client, org: OrgContext) -> None:
    login = client.post(
        "/api/v1/auth/login", json={"org_slug": org.slug, "email": org.admin_email, "password": "correct-horse-battery"}
    )
    token = login.json()["access_token"]
    upload = client.post(
        "/api/v1/imports/customers",
        files={"file": ("u.csv", csv_of([customer_row("LU-1")]).encode(), "text/csv")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert upload.status_code == 200, upload.text

    (run,) = client.get("/api/v1/imports", headers=org.headers()).json()["items"]

    assert (run["user_email"], run["token_name"]) == (org.admin_email, None)


def test_the_import_list_pages_and_is_scoped_to_the_org(
    client: httpx.Client, org: OrgContext, other_org: OrgContext
) -> None:
    for number in range(5):
        import_ok(client, org, csv_of([customer_row(f"PG-{number}")]), filename=f"{number}.csv")
    import_ok(client, other_org, csv_of([customer_row("PG-x")]), filename="fremd.csv")

    names: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/imports", params=params, headers=org.headers()).json()
        names += [item["file_name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert names == ["4.csv", "3.csv", "2.csv", "1.csv", "0.csv"]
    bad_cursor = client.get("/api/v1/imports", params={"cursor": "nope"}, headers=org.headers())
    assert_error(bad_cursor, 422, "VALIDATION_ERROR")


def test_viewers_and_ops_may_not_list_imports(client: httpx.Client, org: OrgContext) -> None:
    for role in (Role.VIEWER, Role.OPS):
        assert_error(client.get("/api/v1/imports", headers=org.headers(role)), 403, "FORBIDDEN")
