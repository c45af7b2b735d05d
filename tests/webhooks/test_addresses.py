"""SSRF (API.md §11): webhook URLs lead only to globally routable addresses, in any spelling.

The API table runs in an org with no activity, so nothing could be sent even if a URL slipped through.
"""

import ipaddress

import httpx
import pytest

from customer_master.config import Settings
from customer_master.webhooks import addresses
from tests.conftest import Db, OrgContext, assert_error, make_org, run_async
from tests.webhooks.helpers import Receiver, create_webhook

REFUSED = [
    "https://10.0.0.1/hook",
    "https://192.168.1.1/hook",
    "https://172.16.0.1/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://100.64.0.1/hook",
    "https://0.0.0.0/hook",
    "https://[::1]/hook",  # loopback, without CM_WEBHOOK_ALLOW_LOOPBACK
    "https://[fe80::1]/hook",
    "https://[fc00::1]/hook",
    "https://[::ffff:10.0.0.1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::a00:1]/hook",  # IPv4-compatible 10.0.0.1
    "https://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
    "https://[2002:a00:1::1]/hook",  # 6to4 of 10.0.0.1
    "https://0x7f.0.0.1/hook",
    "https://2130706433/hook",
    "https://127.1/hook",
    "https://localhost/hook",
    "https://224.0.0.1/hook",  # multicast
    "https://[ff02::1]/hook",
    "http://8.8.8.8/hook",  # http on a global host
    "ftp://8.8.8.8/hook",
    "https://user:secret@8.8.8.8/hook",
    "not a url",
]


@pytest.fixture(scope="module")
def quiet_org(db: Db) -> OrgContext:
    """An org without customers, shared by the tables: nothing happens in it that could be sent."""
    return make_org(db)


@pytest.fixture
def no_loopback(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setattr(settings, "webhook_allow_loopback", False)
    return settings


@pytest.mark.parametrize("url", REFUSED)
def test_a_url_that_leads_anywhere_but_a_global_address_is_refused(
    client: httpx.Client, quiet_org: OrgContext, no_loopback: Settings, url: str
) -> None:
    response = client.post("/api/v1/webhooks", json={"url": url}, headers=quiet_org.headers())

    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["details"]["errors"][0]["field"] == "url"
    assert client.get("/api/v1/webhooks", headers=quiet_org.headers()).json() == {"items": []}


def test_a_patch_to_a_refused_url_is_refused_and_changes_nothing(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver
) -> None:
    created = create_webhook(client, org, receiver.url("/kept"))

    response = client.patch(
        f"/api/v1/webhooks/{created['id']}", json={"url": "https://169.254.169.254/"}, headers=org.headers()
    )

    assert assert_error(response, 422, "VALIDATION_ERROR")["details"]["errors"][0]["field"] == "url"
    assert client.get(f"/api/v1/webhooks/{created['id']}", headers=org.headers()).json()["url"] == created["url"]


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/hook", "https://127.0.0.2:9/hook", "http://localhost:9/hook", "http://[::1]:9/hook"],
)
def test_with_the_loopback_setting_http_and_https_on_loopback_are_allowed(
    client: httpx.Client, quiet_org: OrgContext, settings: Settings, url: str
) -> None:
    response = client.post("/api/v1/webhooks", json={"url": url}, headers=quiet_org.headers())

    assert response.status_code == 201, response.text
    client.delete(f"/api/v1/webhooks/{response.json()['id']}", headers=quiet_org.headers())


@pytest.mark.parametrize(
    "url", ["https://10.0.0.1/", "http://8.8.8.8/", "https://[fe80::1]/", "http://nowhere.invalid/"]
)
def test_with_the_loopback_setting_nothing_else_is_allowed(
    client: httpx.Client, quiet_org: OrgContext, settings: Settings, url: str
) -> None:
    response = client.post("/api/v1/webhooks", json={"url": url}, headers=quiet_org.headers())

    assert assert_error(response, 422, "VALIDATION_ERROR")["details"]["errors"][0]["field"] == "url"


def test_an_https_host_that_does_not_resolve_now_is_accepted(
    client: httpx.Client, quiet_org: OrgContext, no_loopback: Settings
) -> None:
    response = client.post(
        "/api/v1/webhooks", json={"url": "https://hooks.nowhere.invalid/cm"}, headers=quiet_org.headers()
    )

    assert response.status_code == 201, response.text
    client.delete(f"/api/v1/webhooks/{response.json()['id']}", headers=quiet_org.headers())


@pytest.mark.parametrize(
    ("address", "allowed", "allowed_with_loopback"),
    [
        ("8.8.8.8", True, True),
        ("2606:4700::1111", True, True),
        ("::ffff:8.8.8.8", True, True),
        ("127.0.0.1", False, True),
        ("127.255.0.9", False, True),
        ("::1", False, True),
        ("10.0.0.1", False, False),
        ("100.64.0.1", False, False),
        ("198.18.0.1", False, False),
        ("255.255.255.255", False, False),
        ("239.1.1.1", False, False),
        ("::", False, False),
        ("::ffff:192.168.1.1", False, False),
        ("64:ff9b::7f00:1", False, False),
    ],
)
def test_the_address_rule(address: str, allowed: bool, allowed_with_loopback: bool) -> None:
    ip = ipaddress.ip_address(address)

    assert (addresses.refusal(ip, allow_loopback=False) is None) is allowed
    assert (addresses.refusal(ip, allow_loopback=True) is None) is allowed_with_loopback


def test_the_connection_goes_to_the_checked_address_with_the_urls_host_named() -> None:
    target = addresses.parse_url("https://Hooks.Example.com:8443/cm/in?x=1")
    checked = ipaddress.ip_address("203.0.113.7")

    assert target.host == "hooks.example.com"
    assert target.host_header == "hooks.example.com:8443"
    assert str(target.request_url(checked)) == "https://203.0.113.7:8443/cm/in?x=1"
    assert addresses.parse_url("https://[2606:4700::1]/").host_header == "[2606:4700::1]"


def test_every_address_of_a_host_is_checked() -> None:
    target = addresses.parse_url("http://localhost:9/")

    resolved = run_async(addresses.resolve(target, allow_loopback=True))

    assert resolved
    assert all(address.is_loopback for address in resolved)
    with pytest.raises(addresses.UnsafeUrl):
        run_async(addresses.resolve(addresses.parse_url("https://localhost:9/"), allow_loopback=False))
