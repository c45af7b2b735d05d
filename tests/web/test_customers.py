"""The customer pages in a real browser: log in, search, open, edit in place, contacts, create, delete."""

import re

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import create_customer
from tests.web.conftest import WebOrg, htmx_settled, log_in


def test_login_wrong_password_then_right_one_and_logout(page: Page, web_org: WebOrg) -> None:
    page.goto("/customers")
    expect(page).to_have_url(re.compile(r"/login\?next=/customers$"))
    page.get_by_label("Organisation").fill(web_org.slug)
    page.get_by_label("E-mail").fill(web_org.admin_email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong organisation, e-mail or password.")

    page.get_by_label("Password").fill("correct-horse-battery")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/customers$"))
    cookie = next(c for c in page.context.cookies() if c["name"] == "cm_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"
    assert cookie["expires"] > 0, "the session cookie expires with the token"

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/customers")
    expect(page).to_have_url(re.compile(r"/login"))


def test_search_as_you_type_and_open_a_customer(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    create_customer(client, web_org.org, name="Muster GmbH", erp_customer_number="4711",
                    contacts=[{"email": "einkauf@muster.de", "is_primary": True}])  # fmt: skip
    create_customer(client, web_org.org, name="Müller & Söhne KG", erp_customer_number="5100",
                    billing_address={"city": "Wien", "country": "AT"}, default_currency="CHF")  # fmt: skip
    create_customer(client, web_org.org, name="Zeta AG", erp_customer_number="9000")
    log_in(page, web_org)
    rows = page.locator("#customer-rows tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(1)).to_contain_text("Wien, AT")
    expect(rows.nth(1)).to_contain_text("CHF")
    expect(rows.nth(0).locator("td").last).to_have_text("1")  # contact count

    search = page.get_by_label("Search by name, ERP number or contact e-mail")
    search.fill("muller")  # without the accent
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Müller & Söhne KG")
    expect(page).to_have_url(re.compile(r"/customers\?q=muller$"))

    search.fill("90")  # an ERP number prefix
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Zeta AG")

    search.fill("EINKAUF@muster.de")  # a contact's e-mail
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Muster GmbH")

    search.fill("nobody")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("No customer matches")

    search.fill("muster")
    expect(rows).to_have_count(1)
    page.get_by_role("link", name="Muster GmbH").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Muster GmbH")
    expect(page.locator("#customer-fields")).to_contain_text("4711")
    expect(page.locator(".billing-address")).to_contain_text("München")
    expect(page.locator("#customer-fields")).to_contain_text("discount_group")


def test_more_loads_the_next_page(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    for number in range(53):
        create_customer(client, web_org.org, name=f"Kunde {number:03d}", erp_customer_number=f"K{number:03d}")
    log_in(page, web_org)
    rows = page.locator("#customer-rows tr:not(.more-row)")
    expect(rows).to_have_count(50)
    page.get_by_role("link", name="More").click()
    expect(rows).to_have_count(53)
    expect(rows.last).to_contain_text("Kunde 052")
    expect(page.get_by_role("link", name="More")).to_have_count(0)
    expect(page.get_by_role("link", name="Kunde 050")).to_be_focused()


def test_edit_billing_city_in_place(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    customer = create_customer(client, web_org.org)
    log_in(page, web_org)
    page.goto(f"/customers/{customer['id']}")
    page.get_by_role("link", name="Edit", exact=True).click()
    city = page.locator("#customer-fields").get_by_label("City").first
    expect(city).to_have_value("München")
    expect(page.locator("#customer-fields").get_by_role("textbox", name="Name", exact=True)).to_be_focused()
    city.fill("Augsburg")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#customer-fields .notice")).to_have_text("Saved.")
    expect(page.locator(".billing-address")).to_contain_text("Augsburg")

    page.reload()
    expect(page.locator(".billing-address")).to_contain_text("Augsburg")
    stored = client.get(f"/api/v1/customers/{customer['id']}", headers=web_org.org.headers()).json()
    assert stored["billing_address"] == {**customer["billing_address"], "city": "Augsburg"}
    assert stored["metadata"] == customer["metadata"]
    history = page.locator("#history")  # loaded into the page, newest first
    expect(history.locator("tbody tr").first).to_contain_text("Customer changed")
    expect(history.locator("tbody tr").first).to_contain_text("billing_address.city: München → Augsburg")
    expect(history.locator("tbody tr").first).to_contain_text(web_org.admin_email)
    expect(history.locator("tbody tr").nth(1)).to_contain_text("Customer created")
    entry = client.get(f"/api/v1/customers/{customer['id']}/history", headers=web_org.org.headers()).json()["items"][0]
    assert (entry["source"], entry["actor"]["type"], entry["actor"]["label"]) == ("web", "user", web_org.admin_email)


def test_invalid_currency_shows_the_api_message_beside_the_field(
    page: Page, web_org: WebOrg, client: httpx.Client
) -> None:
    customer = create_customer(client, web_org.org)
    log_in(page, web_org)
    page.goto(f"/customers/{customer['id']}")
    page.get_by_role("link", name="Edit", exact=True).click()
    # The form focuses its first field as htmx settles it: typing before that could land in that field.
    expect(page.locator("#customer-fields").get_by_role("textbox", name="Name", exact=True)).to_be_focused()
    page.get_by_label("Currency").fill("XYZ")
    page.locator("#customer-fields").get_by_label("Country").first.fill("XX")
    page.get_by_role("button", name="Save").click()
    currency = page.get_by_label("Currency")
    expect(currency).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-default_currency-error")).to_have_text("not an ISO 4217 currency code: XYZ")
    expect(page.locator("#f-billing_address-country-error")).to_contain_text("ISO 3166-1 alpha-2")
    expect(page.get_by_role("alert")).to_contain_text("Currency")
    expect(currency).to_have_value("XYZ")  # what the person typed stays

    stored = client.get(f"/api/v1/customers/{customer['id']}", headers=web_org.org.headers()).json()
    assert stored["default_currency"] == "EUR"
    assert stored["updated_at"] == customer["updated_at"]


def test_add_two_contacts_and_switch_the_primary(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    customer = create_customer(client, web_org.org)
    log_in(page, web_org)
    page.goto(f"/customers/{customer['id']}")
    contacts = page.locator("#contacts")
    rows = contacts.locator("tbody tr")
    expect(rows).to_have_text(["No contacts yet."])

    contacts.get_by_label("E-mail").fill("Einkauf@Muster.de")
    contacts.get_by_label("Name").fill("Max Mustermann")
    contacts.get_by_label("Primary contact").check()
    contacts.get_by_role("button", name="Add contact").click()
    expect(contacts.locator(".notice")).to_have_text("Contact added.")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("einkauf@muster.de")
    expect(rows.first).to_contain_text("Primary")

    contacts.get_by_label("E-mail").fill("buchhaltung@muster.de")
    contacts.get_by_role("button", name="Add contact").click()
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("einkauf@muster.de")  # primary first

    contacts.get_by_label("E-mail").fill("einkauf@muster.de")  # the same e-mail again
    contacts.get_by_role("button", name="Add contact").click()
    expect(contacts.locator("#new-contact-email-error")).to_contain_text("already")

    contacts.get_by_role("button", name="Make primary (buchhaltung@muster.de)").click()
    expect(contacts.locator(".notice")).to_have_text("buchhaltung@muster.de is now the primary contact.")
    expect(rows.nth(0)).to_contain_text("buchhaltung@muster.de")
    expect(rows.nth(0).locator(".badge")).to_have_text("Primary")
    expect(rows.nth(1).locator(".badge")).to_have_count(0)

    htmx_settled(page)
    contacts.get_by_role("link", name="Edit (einkauf@muster.de)").click()
    expect(contacts.locator("tr.editing")).to_be_visible()
    htmx_settled(page)  # it focuses the form's first field on settling: typing before would land there
    contacts.locator("tr.editing").get_by_label("Name").fill("Max M.")
    contacts.get_by_role("button", name="Save contact").click()
    expect(rows.nth(1)).to_contain_text("Max M.")

    page.once("dialog", lambda dialog: dialog.accept())
    contacts.get_by_role("button", name="Delete (einkauf@muster.de)").click()
    expect(rows).to_have_count(1)

    stored = client.get(f"/api/v1/customers/{customer['id']}/contacts", headers=web_org.org.headers()).json()
    assert [(c["email"], c["is_primary"]) for c in stored["items"]] == [("buchhaltung@muster.de", True)]


def test_new_customer_with_a_first_contact(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    create_customer(client, web_org.org, name="Holder", erp_customer_number="7000")
    log_in(page, web_org)
    page.get_by_role("link", name="New customer").click()
    page.get_by_role("textbox", name="Name", exact=True).fill("Neukunde GmbH")
    page.get_by_label("ERP number").fill("7000")
    page.get_by_label("Contact e-mail").fill("info@neukunde.de")
    page.get_by_role("button", name="Create customer").click()
    expect(page.locator("#f-erp_customer_number-error")).to_contain_text("belongs to another customer")
    expect(page.get_by_role("link", name="Open the customer that has this number")).to_be_visible()

    page.get_by_label("ERP number").fill("7001")
    page.get_by_role("button", name="Create customer").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Neukunde GmbH")
    expect(page.locator("#contacts tbody tr")).to_have_count(1)
    expect(page.locator("#contacts tbody tr").first).to_contain_text("info@neukunde.de")
    expect(page.locator("#contacts .badge")).to_have_text("Primary")


def test_admin_deletes_a_customer_after_confirming(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    customer = create_customer(client, web_org.org, name="Weg GmbH")
    log_in(page, web_org)
    page.goto(f"/customers/{customer['id']}")
    page.get_by_role("link", name="Delete customer").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete Weg GmbH?")
    page.get_by_role("link", name="Keep it").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Weg GmbH")

    page.get_by_role("link", name="Delete customer").click()
    page.get_by_role("button", name="Yes, delete the customer").click()
    expect(page.get_by_role("status")).to_have_text("The customer was deleted.")
    response = client.get(f"/api/v1/customers/{customer['id']}", headers=web_org.org.headers())
    assert response.status_code == 404
