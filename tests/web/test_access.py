"""Roles and cross-site protection: what a VIEWER or OPS sees and may do, and CSRF on every form post."""

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from customer_master.auth.models import Role
from tests.conftest import create_customer
from tests.web.conftest import WebOrg, csrf_token, log_in


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPS])
def test_reader_sees_no_edit_controls_and_is_refused_when_posting_anyway(
    page: Page, web_org: WebOrg, client: httpx.Client, role: Role
) -> None:
    customer = create_customer(client, web_org.org, contacts=[{"email": "einkauf@muster.de", "is_primary": False}])
    log_in(page, web_org, web_org.add_user(role))
    expect(page.get_by_role("link", name="New customer")).to_have_count(0)
    expect(page.get_by_role("link", name="Import / export")).to_have_count(0)
    expect(page.get_by_role("link", name="Users")).to_have_count(0)

    page.get_by_role("link", name="Muster GmbH").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Muster GmbH")
    expect(page.locator("#contacts")).to_contain_text("einkauf@muster.de")
    main = page.locator("main")
    expect(main.get_by_role("button")).to_have_count(0)
    expect(main.get_by_role("link", name=re.compile("Edit|Delete"))).to_have_count(0)
    expect(main.locator("form")).to_have_count(0)

    # Posting anyway, with a valid CSRF token, is refused by the server.
    token = csrf_token(page)
    contact_id = customer["contacts"][0]["id"]
    attempts = {
        f"/customers/{customer['id']}": {"name": "Changed", "default_currency": "EUR", "default_language": "de"},
        f"/customers/{customer['id']}/contacts": {"email": "new@muster.de"},
        f"/customers/{customer['id']}/contacts/{contact_id}/primary": {},
        f"/customers/{customer['id']}/contacts/{contact_id}/delete": {},
        f"/customers/{customer['id']}/delete": {},
        "/customers/new": {"name": "New", "default_currency": "EUR", "default_language": "de"},
        "/admin/users": {"email": "x@example.com", "role": "ADMIN", "password": "long-enough-password"},
        "/admin/tokens": {"name": "sneaky", "role": "ADMIN"},
    }
    for path, form in attempts.items():
        response = page.request.post(path, form={**form, "csrf_token": token})
        assert response.status == 403, path
        assert "Not allowed" in response.text()
    upload = {"file": {"name": "a.csv", "mimeType": "text/csv", "buffer": b"name,default_currency,default_language\n"}}
    for path in ("/import/preview", "/import/apply"):
        response = page.request.post(path, multipart={**upload, "csrf_token": token})
        assert response.status == 403, path
    pages = (f"/customers/{customer['id']}/edit", f"/customers/{customer['id']}/delete", "/admin/users", "/import")
    for path in (*pages, "/admin/tokens", "/export/customers.csv"):
        assert page.request.get(path).status == 403, path

    page.goto(f"/customers/{customer['id']}/delete")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Not allowed")

    stored = client.get(f"/api/v1/customers/{customer['id']}", headers=web_org.org.headers()).json()
    assert stored["name"] == "Muster GmbH"
    assert [(c["email"], c["is_primary"]) for c in stored["contacts"]] == [("einkauf@muster.de", False)]


def test_form_post_without_csrf_token_is_refused(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    customer = create_customer(client, web_org.org)
    log_in(page, web_org)
    page.goto(f"/customers/{customer['id']}")
    form = {"email": "new@muster.de"}
    path = f"/customers/{customer['id']}/contacts"

    without = page.request.post(path, form=form)
    assert without.status == 403
    assert "not sent from this site" in without.text()
    wrong = page.request.post(path, form={**form, "csrf_token": "0" * 64})
    assert wrong.status == 403
    cross_site = page.request.post(
        path, form={**form, "csrf_token": csrf_token(page)}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross_site.status == 403
    assert client.get(f"{'/api/v1' + path}", headers=web_org.org.headers()).json()["items"] == []

    # The same post with the page's token (hidden field, or the header htmx sends) goes through.
    assert page.request.post(path, form={**form, "csrf_token": csrf_token(page)}).status == 200
    headers = {"X-CSRF-Token": csrf_token(page), "HX-Request": "true"}
    assert page.request.post(path, form={"email": "second@muster.de"}, headers=headers).status == 200
    emails = [c["email"] for c in client.get(f"/api/v1{path}", headers=web_org.org.headers()).json()["items"]]
    assert emails == ["new@muster.de", "second@muster.de"]

    # Logging in needs the token too (no login CSRF), and so does logging out.
    assert (
        page.request.post("/login", form={"org_slug": web_org.slug, "email": "a@b.de", "password": "x"}).status == 403
    )
    assert page.request.post("/logout").status == 403
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Muster GmbH")


def test_login_required_everywhere_and_back_after_login(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    customer = create_customer(client, web_org.org)
    page.goto(f"/customers/{customer['id']}")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Organisation").fill(web_org.slug)
    page.get_by_label("E-mail").fill(web_org.admin_email)
    page.get_by_label("Password").fill("correct-horse-battery")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Muster GmbH")

    page.context.clear_cookies(name="cm_session")  # as when the token has expired
    page.get_by_role("link", name="Edit", exact=True).click()  # an htmx request: the whole page goes to the login
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_api_and_ops_paths_are_untouched_by_the_ui(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/api/v1/customers").status_code == 401
    paths = client.get("/openapi.json").json()["paths"]
    assert all(path.startswith("/api/v1/") for path in paths)
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")
