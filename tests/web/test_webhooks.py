"""Webhooks, as an ADMIN manages them in the browser: add (the secret shown once), disable and enable, the
deliveries with their status codes, send again, rotate the secret, delete; a refused URL; the 403 of others.

A receiver on 127.0.0.1 in this process (allowed by the process's settings, as in `tests/webhooks/`), the
test server's own delivery worker; every wait is on a condition with a deadline.
"""

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from customer_master.auth.models import Role
from customer_master.config import get_settings
from tests.conftest import Db, create_customer
from tests.web.conftest import WebOrg, csrf_token, log_in
from tests.webhooks.helpers import Receiver, create_webhook, deliveries, wait_until


@pytest.fixture
def receiver(db: Db, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A loopback receiver, allowed for this test, with a short pause before an attempt is retried."""
    settings = get_settings()
    monkeypatch.setattr(settings, "webhook_allow_loopback", True)
    monkeypatch.setattr(settings, "webhook_retry_s", (0.2,))
    receiver = Receiver()
    yield receiver
    db.execute("DELETE FROM webhook_endpoint WHERE url LIKE :url", url=f"http://127.0.0.1:{receiver.port}/%")
    receiver.close()


def test_admin_adds_a_webhook_sees_its_deliveries_and_manages_it(
    page: Page, web_org: WebOrg, client: httpx.Client, receiver: Receiver
) -> None:
    org = web_org.org
    url = receiver.url("/hook")
    receiver.status["/hook"] = lambda number: 500 if number == 1 else 200
    log_in(page, web_org)
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_text("No webhooks.")).to_be_visible()
    form = page.locator("form", has=page.get_by_role("heading", name="Add a webhook"))
    form.get_by_label("URL").fill(url)
    form.get_by_label("Event types").fill("customer.*")
    form.get_by_label("Description").fill("ERP")
    form.get_by_role("button", name="Add webhook").click()
    secret = page.get_by_label("Signing secret").input_value()
    assert secret.startswith("whsec_")
    expect(page.get_by_text("shown only this once")).to_be_visible()

    page.goto("/admin/webhooks")
    assert secret not in page.content()
    row = page.get_by_role("row").filter(has_text=url)
    expect(row).to_contain_text("customer.*")
    expect(row).to_contain_text("ERP")
    expect(row).to_contain_text("Active")
    row.get_by_role("link", name=url).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(url)
    expect(page.get_by_text("Nothing was sent yet.")).to_be_visible()

    page.get_by_role("button", name="Disable").click()
    expect(page.locator("#webhook-status")).to_have_text("Disabled")
    customer = create_customer(client, org)  # while disabled: kept for the endpoint, sent once it is enabled
    page.get_by_role("button", name="Enable").click()
    expect(page.locator("#webhook-status")).to_have_text("Active")

    [webhook] = client.get("/api/v1/webhooks", headers=org.headers()).json()["items"]
    wait_until(lambda: len(deliveries(client, org, webhook["id"])) == 2, "a failed attempt and a delivery")
    page.reload()
    failed = page.get_by_role("row", name=re.compile("HTTP 500"))
    delivered = page.get_by_role("row", name=re.compile("HTTP 200"))
    [event] = {r.event["id"] for r in receiver.received("/hook")}
    assert receiver.received("/hook")[0].event["data"]["customer_id"] == customer["id"]
    expect(failed).to_contain_text(event)
    expect(delivered).to_contain_text(event)
    expect(delivered).to_contain_text("delivered")
    expect(page.locator("table.deliveries tbody tr").first).to_contain_text("HTTP 200")  # newest first

    delivered.get_by_role("button", name=re.compile("Send again from here")).click()
    expect(page.get_by_role("status")).to_contain_text("will be sent again")
    wait_until(lambda: len(receiver.received("/hook", delivered_only=True)) == 2, "the event sent again")
    assert {r.event["id"] for r in receiver.received("/hook")} == {event}

    page.get_by_role("button", name="Rotate the secret").click()
    rotated = page.get_by_label("Signing secret").input_value()
    assert rotated.startswith("whsec_")
    assert rotated != secret

    page.get_by_role("link", name="Delete webhook").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Delete the webhook for {url}?")
    page.get_by_role("button", name="Yes, delete the webhook").click()
    expect(page.get_by_role("status")).to_have_text("The webhook was deleted.")
    expect(page.get_by_text("No webhooks.")).to_be_visible()
    assert client.get("/api/v1/webhooks", headers=org.headers()).json()["items"] == []


def test_a_refused_url_is_explained_beside_the_input(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    log_in(page, web_org)
    page.goto("/admin/webhooks")
    page.get_by_label("URL").fill("https://10.0.0.1/hook")
    page.get_by_label("Event types").fill("customer.nope")
    page.get_by_role("button", name="Add webhook").click()
    expect(page.locator("#f-types-error")).to_contain_text("unknown event type customer.nope")

    page.get_by_label("Event types").fill("all")
    page.get_by_role("button", name="Add webhook").click()
    expect(page.locator("#f-url-error")).to_contain_text("10.0.0.1 is not a globally routable address")
    expect(page.get_by_label("URL")).to_have_value("https://10.0.0.1/hook")
    assert client.get("/api/v1/webhooks", headers=web_org.org.headers()).json()["items"] == []


def test_only_an_admin_reaches_the_webhooks(page: Page, web_org: WebOrg, client: httpx.Client) -> None:
    webhook = create_webhook(client, web_org.org, "https://hooks.example.invalid/cm")  # accepted: may resolve later
    log_in(page, web_org, web_org.add_user(Role.INTEGRATOR))
    expect(page.get_by_role("link", name="Webhooks")).to_have_count(0)

    for path in ("/admin/webhooks", f"/admin/webhooks/{webhook['id']}", f"/admin/webhooks/{webhook['id']}/delete"):
        response = page.request.get(path)
        assert response.status == 403, path
        assert "Not allowed" in response.text()
    token = csrf_token(page)
    posts = {
        "/admin/webhooks": {"url": "https://hooks.example.invalid/other", "types": "all"},
        f"/admin/webhooks/{webhook['id']}/status": {"status": "DISABLED"},
        f"/admin/webhooks/{webhook['id']}/rotate-secret": {},
        f"/admin/webhooks/{webhook['id']}/delete": {},
    }
    for path, form in posts.items():
        assert page.request.post(path, form={**form, "csrf_token": token}).status == 403, path
    shown = {name: value for name, value in webhook.items() if name != "secret"}
    assert client.get("/api/v1/webhooks", headers=web_org.org.headers()).json()["items"] == [shown]
