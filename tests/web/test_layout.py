"""Layout and keyboard: usable at phone width without sideways scrolling, and without a mouse."""

import re

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import create_customer
from tests.web.conftest import WebOrg, log_in


def test_phone_width_has_no_sideways_scrolling(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    customer = create_customer(client, web_org.org, contacts=[{"email": "sehr.langer.name@beispiel-firma.de"}])
    log_in(page, web_org)
    page.set_viewport_size({"width": 375, "height": 740})
    paths = ["/customers", f"/customers/{customer['id']}", f"/customers/{customer['id']}/edit", "/customers/new"]
    paths += ["/import", "/detect", "/admin/users", "/admin/tokens"]
    for language in ("en", "de"):  # German words are longer
        page.context.add_cookies([{"name": "cm_lang", "value": language, "url": page.url}])
        for path in paths:
            page.goto(path)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} ({language}) scrolls sideways by {overflow}px at phone width"
    page.goto("/customers")
    expect(page.get_by_role("link", name="Muster GmbH")).to_be_visible()


def test_keyboard_only_search_open_and_edit(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    create_customer(client, web_org.org, name="Tastatur GmbH", erp_customer_number="K-1")
    create_customer(client, web_org.org, name="Maus AG", erp_customer_number="M-1")
    log_in(page, web_org)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_label("Search by name, ERP number or contact e-mail").focus()
    page.keyboard.type("tastatur")
    expect(page.locator("#customer-rows tr")).to_have_count(1)  # from 2: the search has answered
    page.keyboard.press("Tab")  # the search button
    page.keyboard.press("Tab")  # the first result
    expect(page.get_by_role("link", name="Tastatur GmbH")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Tastatur GmbH")
    page.get_by_role("link", name="Edit", exact=True).focus()
    page.keyboard.press("Enter")
    name = page.locator("#customer-fields").get_by_role("textbox", name="Name", exact=True)
    expect(name).to_be_focused()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("Tastatur AG")
    page.keyboard.press("Enter")  # submits the form
    expect(page.get_by_role("heading", level=1)).to_have_text("Tastatur AG")
    expect(page).to_have_url(re.compile(r"/customers/[0-9a-f-]+$"))
