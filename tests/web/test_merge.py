"""Duplicates and merge in the browser (API.md §12): an INTEGRATOR sees the possible duplicates, dismisses a
pair, merges another on the merge screen (a field from the other customer, the preview, the merge), finds the
merged-away customer's note leading to the survivor, and undoes the merge; a VIEWER sees without acting.

One org and one login per test, the steps in sequence: the browser tests are the slow part of the suite.
"""

import re
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from customer_master.auth.models import Role
from tests.conftest import create_customer
from tests.web.conftest import WebOrg, csrf_token, log_in


def _customers(client: httpx.Client, web_org: WebOrg) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two customers that share a contact's e-mail domain and most of a name: a pair of possible duplicates."""
    first = create_customer(
        client,
        web_org.org,
        name="Brenner Maschinenbau GmbH",
        erp_customer_number="K-100",
        contacts=[{"email": "einkauf@brenner-maschinen.de", "is_primary": True}],
    )
    second = create_customer(
        client,
        web_org.org,
        name="Brenner Maschinenbau",
        erp_customer_number="K-200",
        billing_address={"street": "Hafenweg 7", "city": "Bremen", "postal_code": "28195", "country": "DE"},
        metadata={"region": "Nord"},
        contacts=[{"email": "buchhaltung@brenner-maschinen.de", "name": "Frau Lang", "is_primary": True}],
    )
    return first, second


def test_integrator_merges_two_customers_and_undoes_it(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    first, second = _customers(client, web_org)
    log_in(page, web_org, web_org.add_user(Role.INTEGRATOR))

    page.goto(f"/merge?ids={first['id']}&ids={second['id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Merge customers")
    expect(page.get_by_role("radio", name="Keep this one (Brenner Maschinenbau GmbH)")).to_be_checked()
    page.get_by_role("radio", name="Billing address: from Brenner Maschinenbau", exact=True).check()
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#merge-preview")
    expect(preview.locator(".merged-billing-address")).to_contain_text("Bremen")
    expect(preview.locator(".merged-name")).to_have_text("Brenner Maschinenbau GmbH")
    expect(preview.locator(".merged-erp-aliases")).to_have_text("K-200")
    expect(preview.locator(".merged-contacts")).to_contain_text("buchhaltung@brenner-maschinen.de")
    expect(preview.locator(".merged-metadata")).to_contain_text("Nord")
    stored = client.get(f"/api/v1/customers/{second['id']}", headers=web_org.org.headers())
    assert stored.status_code == 200  # a preview writes nothing

    preview.get_by_role("button", name="Merge", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("1 customer was merged into this one.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Brenner Maschinenbau GmbH")
    result_url = page.url

    page.goto(f"/customers/{second['id']}")
    expect(page.locator(".merged-note")).to_have_text("This customer was merged into Brenner Maschinenbau GmbH.")
    page.locator(".merged-note").get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Brenner Maschinenbau GmbH")
    expect(page.locator(".erp-aliases")).to_have_text("K-200")
    expect(page.locator(".billing-address")).to_contain_text("Bremen")

    page.goto(result_url)
    page.get_by_role("button", name="Undo the merge").click()
    expect(page.get_by_role("status")).to_contain_text("The merge was undone")
    expect(page.get_by_role("link", name="Brenner Maschinenbau", exact=True)).to_be_visible()
    page.goto(f"/customers/{second['id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Brenner Maschinenbau")
    expect(page.locator(".erp-aliases")).to_have_count(0)

    undo_path = re.sub(r"^.*(/merges/[^?]+).*$", r"\1/undo", result_url)
    again = page.request.post(undo_path, form={"csrf_token": csrf_token(page)})
    assert again.status == 409
    assert "This merge cannot be undone: it was undone already" in again.text()
