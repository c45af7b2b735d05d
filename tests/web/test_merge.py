"""Duplicates and merge in the browser (API.md §12): an INTEGRATOR sees the possible duplicates, dismisses a
pair, merges another on the merge screen (a field from the other customer, the preview, the merge), finds the
merged-away customer's note leading to the survivor, and undoes the merge; a VIEWER sees without acting.

One org and one login per test, the steps in sequence: the browser tests are the slow part of the suite.
"""

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from customer_master.auth.models import Role
from customer_master.web import duplicates
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


def _another_pair(client: httpx.Client, web_org: WebOrg) -> None:
    for name in ("Kessler Logistik GmbH", "Kessler Logistik AG"):
        email = f"{name.split()[-1].lower()}@kessler-logistik.de"
        create_customer(client, web_org.org, name=name, erp_customer_number=None, contacts=[{"email": email}])


def test_integrator_dismisses_a_pair_merges_another_and_undoes_it(
    page: Page, web_org: WebOrg, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duplicates, "PAGE_SIZE", 1)  # the server runs in this process: "More" after each pair
    first, second = _customers(client, web_org)
    _another_pair(client, web_org)
    log_in(page, web_org, web_org.add_user(Role.INTEGRATOR))

    page.get_by_role("link", name="Possible duplicates").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Possible duplicates")
    pairs = page.locator("tr.pair")
    expect(pairs).to_have_count(1)
    page.get_by_role("link", name="More").click()
    expect(pairs).to_have_count(2)
    expect(page.get_by_role("link", name="More")).to_have_count(0)
    kessler = pairs.filter(has_text="Kessler Logistik AG")
    expect(kessler).to_contain_text("Same contact e-mail domain: kessler-logistik.de")
    expect(kessler).to_contain_text("Similar name")
    kessler.get_by_role("button", name=re.compile("^Not a duplicate")).click()
    expect(page.get_by_role("status")).to_contain_text("Marked as not a duplicate")
    expect(pairs).to_have_count(1)
    page.reload()
    expect(pairs).to_have_count(1)
    brenner = pairs.filter(has_text="Brenner Maschinenbau GmbH")
    expect(brenner.get_by_role("link", name="Brenner Maschinenbau", exact=True)).to_have_attribute(
        "href", f"/customers/{second['id']}"
    )
    expect(brenner.locator(".score")).to_have_text(re.compile(r"^0\.\d\d$"))

    brenner.get_by_role("link", name="Merge…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Merge customers")
    # The pair's lower id is the first column and survives unless another is chosen. Choosing the other moves
    # the rows that took the first column's values along; then one field is taken from the merged customer.
    merged, survivor = sorted([first, second], key=lambda customer: customer["id"])
    page.get_by_role("radio", name=f"Keep this one ({survivor['name']})").check()
    expect(page.get_by_role("radio", name=f"Name: from {survivor['name']}", exact=True)).to_be_checked()
    preview = page.locator("#merge-preview")
    expect(preview.locator(".merged-name")).to_have_text(survivor["name"])
    page.get_by_role("radio", name=f"Billing address: from {merged['name']}", exact=True).check()
    page.get_by_role("button", name="Preview").click()
    expect(preview.locator(".merged-billing-address")).to_contain_text(merged["billing_address"]["city"])
    expect(preview.locator(".merged-name")).to_have_text(survivor["name"])
    expect(preview.locator(".merged-erp-aliases")).to_have_text(merged["erp_customer_number"])
    contacts = preview.locator(".merged-contacts")
    for email in ("einkauf@brenner-maschinen.de", "buchhaltung@brenner-maschinen.de"):
        expect(contacts).to_contain_text(email)
    expect(preview.locator(".merged-metadata")).to_contain_text("Nord")
    stored = client.get(f"/api/v1/customers/{merged['id']}", headers=web_org.org.headers())
    assert stored.status_code == 200  # a preview writes nothing

    preview.get_by_role("button", name="Merge", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("1 customer was merged into this one.")
    expect(page.get_by_role("heading", level=1)).to_have_text(survivor["name"])
    result_url = page.url

    page.goto(f"/customers/{merged['id']}")
    expect(page.locator(".merged-note")).to_have_text(f"This customer was merged into {survivor['name']}.")
    page.locator(".merged-note").get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(survivor["name"])
    expect(page.locator(".erp-aliases")).to_have_text(merged["erp_customer_number"])
    expect(page.locator(".billing-address")).to_contain_text(merged["billing_address"]["city"])

    page.goto(result_url)
    page.get_by_role("button", name="Undo the merge").click()
    expect(page.get_by_role("status")).to_contain_text("The merge was undone")
    expect(page.get_by_role("link", name=merged["name"], exact=True)).to_be_visible()
    page.goto(f"/customers/{merged['id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text(merged["name"])
    page.goto(f"/customers/{survivor['id']}")
    expect(page.locator(".billing-address")).to_contain_text(survivor["billing_address"]["city"])
    expect(page.locator(".erp-aliases")).to_have_count(0)

    undo_path = re.sub(r"^.*(/merges/[^?]+).*$", r"\1/undo", result_url)
    again = page.request.post(undo_path, form={"csrf_token": csrf_token(page)})
    assert again.status == 409
    assert "This merge cannot be undone: it was undone already" in again.text()


def test_viewer_sees_pairs_and_customers_side_by_side_without_acting(
    page: Page, web_org: WebOrg, client: httpx.Client
) -> None:
    first, second = _customers(client, web_org)
    log_in(page, web_org, web_org.add_user(Role.VIEWER))
    page.get_by_role("link", name="Possible duplicates").click()
    pair = page.locator("tr.pair")
    expect(pair).to_have_count(1)
    expect(pair).to_contain_text("Same contact e-mail domain: brenner-maschinen.de")
    main = page.locator("main")
    expect(main.get_by_role("button")).to_have_count(0)
    expect(main.locator("form")).to_have_count(0)

    pair.get_by_role("link", name="Compare").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Merge customers")
    expect(page.get_by_role("radio")).to_have_count(0)
    expect(main.get_by_role("button", name=re.compile("Preview|Merge"))).to_have_count(0)

    token = csrf_token(page)
    attempts = {
        "/duplicates/dismiss": {"customer_ids": first["id"]},
        "/merge/preview": {"ids": first["id"], "survivor": second["id"]},
        "/merge": {"ids": first["id"], "survivor": second["id"]},
        f"/merges/{first['id']}/undo": {},
    }
    for path, form in attempts.items():
        response = page.request.post(path, form={**form, "csrf_token": token})
        assert response.status == 403, path
        assert "Not allowed" in response.text()
    assert client.get(f"/api/v1/customers/{second['id']}", headers=web_org.org.headers()).status_code == 200

    page.get_by_role("button", name="Deutsch").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Kunden zusammenführen")
    page.get_by_role("link", name="Mögliche Dubletten").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Mögliche Dubletten")
    expect(pair).to_contain_text("Gleiche Domain der Kontakt-E-Mail: brenner-maschinen.de")
    expect(pair.get_by_role("link", name="Vergleichen")).to_be_visible()
