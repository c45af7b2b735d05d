"""Detection try-out in the browser: candidates with signals and scores, and the way to the customer."""

import httpx
from playwright.sync_api import Page, expect

from customer_master.auth.models import Role
from tests.conftest import create_customer
from tests.web.conftest import WebOrg, log_in


def test_detect_by_sender_and_text_then_open_the_customer(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    muster = create_customer(client, web_org.org, contacts=[{"email": "einkauf@muster.de", "is_primary": True}])
    create_customer(client, web_org.org, name="Muster Handel AG", erp_customer_number="4800")
    log_in(page, web_org, web_org.add_user(Role.VIEWER))  # every role may detect
    page.get_by_role("link", name="Detection").click()
    page.get_by_label("Sender").fill('"Max" <Einkauf@Muster.de>')
    page.get_by_label("Order text").fill("Bestellung\nKundennr: 4711\nBitte liefern Sie …")
    page.get_by_role("button", name="Detect").click()

    results = page.locator("#detect-results")
    expect(results.locator(".detect-status")).to_contain_text("Picked automatically: Muster GmbH")
    best = results.locator("tbody tr").first
    expect(best).to_contain_text("Muster GmbH")
    expect(best.locator(".num")).to_have_text("0.9990")
    expect(best).to_contain_text("S1_EMAIL")
    expect(best).to_contain_text("einkauf@muster.de")
    expect(best).to_contain_text("S4_CUSTOMER_NUMBER")
    expect(best).to_contain_text("4711")

    page.get_by_label("Sender").fill("someone@gmail.com")
    page.get_by_label("Order text").fill("")
    page.get_by_role("button", name="Detect").click()
    expect(results.locator(".detect-status")).to_have_text("No customer found.")

    page.get_by_label("Sender").fill("")
    page.get_by_label("Company name").fill("Muster")
    page.get_by_role("button", name="Detect").click()
    expect(results.locator(".detect-status")).to_have_text("Ambiguous: a person has to choose.")
    expect(results.locator("tbody tr")).to_have_count(2)
    expect(results).to_contain_text("S5_NAME")

    results.get_by_role("link", name="Muster GmbH").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Muster GmbH")
    assert page.url.endswith(f"/customers/{muster['id']}")
