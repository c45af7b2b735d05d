"""One transaction per web request, as in the API: a failure that becomes a page or a form shown again
leaves nothing of what the request wrote before it.

The service is made to fail after it has written (the server runs in this process), which no input can
do reliably; without the rollback, the half-done write would be committed with the error page.
"""

import html
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from customer_master.customers import service
from customer_master.errors import Conflict, ValidationFailed
from tests.conftest import PASSWORD, OrgContext, Server, create_customer


def page_token(page: httpx.Response) -> str:
    match = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
    assert match, page.text[:500]
    return match.group(1)


@pytest.fixture
def web_client(server: Server, org: OrgContext) -> Iterator[httpx.Client]:
    """A logged-in admin's browser, as plain HTTP: the session cookie, and the CSRF token htmx sends."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        form = {"org_slug": org.slug, "email": org.admin_email, "password": PASSWORD}
        response = client.post("/login", data={**form, "csrf_token": page_token(client.get("/login"))})
        assert response.status_code == 303, response.text[:500]
        client.headers["X-CSRF-Token"] = page_token(client.get("/customers"))
        yield client


def fail_after(monkeypatch: pytest.MonkeyPatch, name: str, error: Exception) -> None:
    """`service.<name>` does its work, then raises `error`."""
    done = getattr(service, name)

    async def write_then_fail(*args: Any, **kwargs: Any) -> Any:
        await done(*args, **kwargs)
        raise error

    monkeypatch.setattr(service, name, write_then_fail)


def contacts(client: httpx.Client, org: OrgContext, customer_id: str) -> list[str]:
    response = client.get(f"/api/v1/customers/{customer_id}/contacts", headers=org.headers())
    return [contact["email"] for contact in response.json()["items"]]


def test_a_contact_form_shown_again_wrote_nothing(
    web_client: httpx.Client, client: httpx.Client, org: OrgContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = create_customer(client, org)
    fail_after(monkeypatch, "create_contact", Conflict("Refused after the write", "email", None))

    response = web_client.post(f"/customers/{customer['id']}/contacts", data={"email": "new@muster.de"})

    assert response.status_code == 409
    assert "Refused after the write" in response.text
    assert 'value="new@muster.de"' in response.text, "the form again, with what was typed"
    assert contacts(client, org, customer["id"]) == []


def test_a_customer_form_shown_again_wrote_nothing(
    web_client: httpx.Client, client: httpx.Client, org: OrgContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = create_customer(client, org)
    fail_after(monkeypatch, "update_customer", ValidationFailed([{"field": "name", "reason": "refused after"}]))
    edit = web_client.get(f"/customers/{customer['id']}/edit")
    base = re.search(r'name="base" value="([^"]*)"', edit.text)
    assert base, edit.text[:500]

    form = {"name": "Changed GmbH", "default_currency": "EUR", "default_language": "de-DE"}
    response = web_client.post(f"/customers/{customer['id']}", data={**form, "base": html.unescape(base.group(1))})

    assert response.status_code == 422
    assert "refused after" in response.text
    stored = client.get(f"/api/v1/customers/{customer['id']}", headers=org.headers()).json()
    assert stored["name"] == "Muster GmbH"
    assert stored["updated_at"] == customer["updated_at"]


def test_an_error_page_rolls_back_what_the_request_wrote(
    web_client: httpx.Client, client: httpx.Client, org: OrgContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = create_customer(client, org, contacts=[{"email": "einkauf@muster.de", "is_primary": True}])
    contact_id = customer["contacts"][0]["id"]
    fail_after(monkeypatch, "delete_contact", Conflict("Refused after the delete", "email", None))

    response = web_client.post(f"/customers/{customer['id']}/contacts/{contact_id}/delete")

    assert response.status_code == 409
    assert response.headers["content-type"].startswith("text/html")
    assert "Refused after the delete" in response.text
    assert contacts(client, org, customer["id"]) == ["einkauf@muster.de"]
