"""Small helpers for the detection tests: customers with contacts, one detection call."""

import secrets
from typing import Any

import httpx

from customer_master.auth.models import Role
from tests.conftest import OrgContext, create_customer


def add_customer(
    client: httpx.Client, org: OrgContext, name: str, erp: str | None = None, emails: tuple[str, ...] = ()
) -> str:
    """A customer of `org` with these contact e-mails; its id."""
    customer = create_customer(
        client,
        org,
        name=name,
        erp_customer_number=erp,
        contacts=[{"email": email, "is_primary": index == 0} for index, email in enumerate(emails)],
    )
    customer_id: str = customer["id"]
    return customer_id


def detect(client: httpx.Client, org: OrgContext, role: Role = Role.ADMIN, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/customers/detect", json=body, headers=org.headers(role))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def unique_domain() -> str:
    """Contacts of one test never meet another test's: every test uses domains of its own."""
    return f"firma-{secrets.token_hex(4)}.de"


def signals_of(candidate: dict[str, Any]) -> list[tuple[str, float, str]]:
    return [(s["signal"], s["score"], s["value"]) for s in candidate["signals"]]
