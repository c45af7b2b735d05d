"""Users and API tokens, as an ADMIN does it in the browser."""

import re

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD
from tests.web.conftest import WebOrg, log_in


def test_admin_creates_a_user_disables_and_enables_them(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    log_in(page, web_org)
    page.get_by_role("link", name="Users").click()
    email = f"ops@{web_org.slug}.example.com"
    form = page.locator("form", has=page.get_by_role("heading", name="Add a user"))
    form.get_by_label("E-mail").fill(email)
    form.get_by_label("Name").fill("Olga Ops")
    form.get_by_label("Role").select_option("OPS")
    form.get_by_label("Initial password").fill("short")
    form.get_by_role("button", name="Add user").click()
    expect(page.locator("#f-password-error")).to_contain_text("at least 12 characters")

    page.locator("form", has=page.get_by_role("heading", name="Add a user")).get_by_label("Initial password").fill(
        PASSWORD
    )
    page.get_by_role("button", name="Add user").click()
    expect(page.locator(".notice")).to_have_text(f"User {email} created with role OPS.")
    row = page.get_by_role("row", name=re.compile(re.escape(email)))
    expect(row).to_contain_text("active")

    login = {"org_slug": web_org.slug, "email": email, "password": PASSWORD}
    assert client.post("/api/v1/auth/login", json=login).status_code == 200
    row.get_by_role("button", name=f"Disable ({email})").click()
    expect(page.get_by_role("row", name=re.compile(re.escape(email)))).to_contain_text("disabled")
    assert client.post("/api/v1/auth/login", json=login).status_code == 403

    page.get_by_role("row", name=re.compile(re.escape(email))).get_by_label(f"Role of {email}").select_option(
        "INTEGRATOR"
    )
    page.get_by_role("button", name=f"Change role ({email})").click()
    expect(page.locator(".notice")).to_have_text(f"{email}: role INTEGRATOR, disabled.")
    page.get_by_role("button", name=f"Enable ({email})").click()
    expect(page.locator(".notice")).to_have_text(f"{email}: role INTEGRATOR, active.")
    assert client.post("/api/v1/auth/login", json=login).status_code == 200

    # The admin's own row has no controls: nobody locks the org out by accident.
    own = page.get_by_role("row", name=re.compile(re.escape(web_org.admin_email)))
    expect(own.get_by_role("button")).to_have_count(0)


def test_admin_creates_a_token_sees_it_once_and_revokes_it(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    log_in(page, web_org)
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("erp-nightly")
    page.get_by_label("Role").select_option("INTEGRATOR")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_label("Token", exact=True).input_value()
    assert token.startswith("cm_")
    expect(page.get_by_text("shown only this once")).to_be_visible()
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["token"]["name"] == "erp-nightly"
    assert me["token"]["role"] == "INTEGRATOR"

    page.goto("/admin/tokens")
    assert token not in page.content()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke (erp-nightly)").click()
    expect(page.get_by_role("status")).to_have_text("The token was revoked.")
    expect(page.get_by_role("row", name=re.compile("erp-nightly"))).to_have_count(0)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
