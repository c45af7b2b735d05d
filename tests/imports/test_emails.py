"""Contact e-mails are checked apart (`imports/emails.py`), each distinct cell once, the rule once per domain.

However they are checked, the report is the one the rule gives row by row.
"""

from typing import Any

import httpx
import pytest

from tests.conftest import OrgContext, create_customer
from tests.customers.helpers import add_contact
from tests.imports.helpers import csv_of, customer_row, import_ok

ROWS = [
    customer_row("EM-1", contact_email="einkauf@muster.de"),  # stored exactly so
    customer_row("EM-1", contact_email=" Lager@Muster.DE "),  # rewritten to lager@muster.de
    customer_row("EM-2", contact_email="kaputt@"),  # fails
    customer_row("EM-3", contact_email="info@xn--mller-kva.de"),  # an IDN in ASCII form: rewritten
    *(customer_row(f"EM-{n}", contact_email=f"kontakt{n}@firma{n}.de") for n in range(4, 60)),
]


@pytest.fixture
def existing(client: httpx.Client, org: OrgContext) -> OrgContext:
    customer = create_customer(client, org, erp_customer_number="EM-1")
    add_contact(client, org, customer["id"], email="einkauf@muster.de", is_primary=True)
    return org


def expected(report: dict[str, Any]) -> None:
    assert (report["rows"], report["failed"], report["imported"], report["updated"]) == (60, 1, 57, 1)
    assert report["errors"] == [
        {
            "row": 4,
            "field": "contact_email",
            "value": "kaputt@",
            "error": "Invalid e-mail address: kaputt@ (There must be something after the @-sign.)",
        }
    ]
    assert report["contacts_created"] == 58


def contact_emails(client: httpx.Client, org: OrgContext, erp: str) -> list[str]:
    listing = client.get("/api/v1/customers", params={"erp_number": erp}, headers=org.headers()).json()["items"]
    customer = client.get(f"/api/v1/customers/{listing[0]['id']}", headers=org.headers()).json()
    return [contact["email"] for contact in customer["contacts"]]


def test_checked_in_the_import_itself(client: httpx.Client, existing: OrgContext) -> None:
    expected(import_ok(client, existing, csv_of(ROWS)))
    assert contact_emails(client, existing, "EM-1") == ["einkauf@muster.de", "lager@muster.de"]
    assert contact_emails(client, existing, "EM-3") == ["info@müller.de"]
