"""Webhook endpoints (API.md §11 "Push"): create, list, get, change, delete, rotate; ADMIN only; per org."""

import base64
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from customer_master.auth.models import Role
from customer_master.config import Settings
from tests.conftest import Db, OrgContext, assert_error, make_org
from tests.webhooks.helpers import Receiver, create_webhook

ENDPOINT_FIELDS = {"id", "url", "types", "description", "status", "created_at"}


@pytest.fixture(scope="module")
def shared_org(db: Db) -> OrgContext:
    """One org for the tables of refusals, which change nothing that the next case could see."""
    return make_org(db)


def test_an_endpoint_is_created_listed_read_changed_and_deleted_and_its_secret_shown_once(
    client: httpx.Client, org: OrgContext, settings: Settings, receiver: Receiver
) -> None:
    created = create_webhook(
        client, org, receiver.url("/a"), types=["customer.*", "contact.deleted"], description="ERP"
    )

    assert set(created) == ENDPOINT_FIELDS | {"secret"}
    assert created["status"] == "ACTIVE"
    assert created["types"] == ["customer.*", "contact.deleted"]
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 24
    listed = client.get("/api/v1/webhooks", headers=org.headers()).json()["items"]
    assert listed == [{key: created[key] for key in ENDPOINT_FIELDS}]
    read = client.get(f"/api/v1/webhooks/{created['id']}", headers=org.headers()).json()
    assert read == listed[0]

    patched = client.patch(
        f"/api/v1/webhooks/{created['id']}",
        json={"types": None, "description": "ERP (all)", "status": "DISABLED", "url": receiver.url("/b")},
        headers=org.headers(),
    )
    assert patched.status_code == 200, patched.text
    assert patched.json() | {"created_at": None} == {
        "id": created["id"],
        "url": receiver.url("/b"),
        "types": None,
        "description": "ERP (all)",
        "status": "DISABLED",
        "created_at": None,
    }
    # Only what is sent changes.
    again = client.patch(f"/api/v1/webhooks/{created['id']}", json={"status": "ACTIVE"}, headers=org.headers())
    assert again.json()["description"] == "ERP (all)"
    assert again.json()["status"] == "ACTIVE"

    rotated = client.post(f"/api/v1/webhooks/{created['id']}/rotate-secret", headers=org.headers())
    assert rotated.status_code == 200
    assert set(rotated.json()) == {"secret"}
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != created["secret"]

    assert client.delete(f"/api/v1/webhooks/{created['id']}", headers=org.headers()).status_code == 204
    assert_error(client.get(f"/api/v1/webhooks/{created['id']}", headers=org.headers()), 404, "NOT_FOUND")
    assert client.get("/api/v1/webhooks", headers=org.headers()).json() == {"items": []}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"types": []}, "types"),
        ({"types": ["customer.renamed"]}, "types"),
        ({"types": ["customer.*,contact.*"]}, "types"),
        ({"types": ["order.*"]}, "types"),
        ({"secret": "whsec_mine"}, "secret"),
        ({"description": "x" * 501}, "description"),
    ],
)
def test_bad_bodies_are_refused_with_the_field(
    client: httpx.Client,
    shared_org: OrgContext,
    settings: Settings,
    receiver: Receiver,
    body: dict[str, object],
    field: str,
) -> None:
    response = client.post("/api/v1/webhooks", json={"url": receiver.url("/x"), **body}, headers=shared_org.headers())

    assert assert_error(response, 422, "VALIDATION_ERROR")["details"]["errors"][0]["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [({"status": "FAILING"}, "status"), ({"url": None}, "url"), ({"status": None}, "status"), ({"types": []}, "types")],
)
def test_a_patch_may_not_set_failing_null_or_no_types(
    client: httpx.Client,
    shared_org: OrgContext,
    settings: Settings,
    receiver: Receiver,
    body: dict[str, object],
    field: str,
) -> None:
    created = create_webhook(client, shared_org, receiver.url("/x"))

    response = client.patch(f"/api/v1/webhooks/{created['id']}", json=body, headers=shared_org.headers())

    assert assert_error(response, 422, "VALIDATION_ERROR")["details"]["errors"][0]["field"] == field


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPS, Role.INTEGRATOR])
def test_only_admins_manage_webhooks(
    client: httpx.Client, shared_org: OrgContext, settings: Settings, receiver: Receiver, role: Role
) -> None:
    created = create_webhook(client, shared_org, receiver.url("/x"))
    path = f"/api/v1/webhooks/{created['id']}"

    for method, url, body in [
        ("GET", "/api/v1/webhooks", None),
        ("POST", "/api/v1/webhooks", {"url": receiver.url("/y")}),
        ("GET", path, None),
        ("PATCH", path, {"description": "mine"}),
        ("DELETE", path, None),
        ("POST", f"{path}/rotate-secret", None),
        ("GET", f"{path}/deliveries", None),
        ("POST", f"{path}/replay", {"after": "0"}),
    ]:
        response = client.request(method, url, json=body, headers=shared_org.headers(role))
        assert_error(response, 403, "FORBIDDEN")


def test_another_orgs_webhook_is_not_found_everywhere(
    client: httpx.Client, org: OrgContext, other_org: OrgContext, settings: Settings, receiver: Receiver
) -> None:
    theirs = create_webhook(client, other_org, receiver.url("/theirs"))
    path = f"/api/v1/webhooks/{theirs['id']}"

    for method, url, body in [
        ("GET", path, None),
        ("PATCH", path, {"description": "mine"}),
        ("DELETE", path, None),
        ("POST", f"{path}/rotate-secret", None),
        ("GET", f"{path}/deliveries", None),
        ("POST", f"{path}/replay", {"after": "0"}),
    ]:
        assert_error(client.request(method, url, json=body, headers=org.headers()), 404, "NOT_FOUND")
    assert client.get("/api/v1/webhooks", headers=org.headers()).json() == {"items": []}
    assert client.get(path, headers=other_org.headers()).json()["description"] is None


def test_the_deliveries_log_pages_newest_first_with_an_opaque_cursor(
    client: httpx.Client, db: Db, org: OrgContext, settings: Settings, receiver: Receiver
) -> None:
    created = create_webhook(client, org, receiver.url("/log"))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for attempt in range(1, 6):  # two at the same instant: the id breaks the tie
        db.execute(
            "INSERT INTO webhook_delivery (org_id, endpoint_id, event_id, sequence, attempt, status_code, duration_ms,"
            " created_at) VALUES (:org, :endpoint, :event, 1, :attempt, 500, 7, :at)",
            org=org.id,
            endpoint=uuid.UUID(created["id"]),
            event=uuid.uuid4(),
            attempt=attempt,
            at=start + timedelta(seconds=min(attempt, 4)),
        )

    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get(f"/api/v1/webhooks/{created['id']}/deliveries", params=params, headers=org.headers()).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert sorted(item["attempt"] for item in seen[:2]) == [4, 5]
    assert [item["attempt"] for item in seen[2:]] == [3, 2, 1]
    assert set(seen[0]) == {"id", "event_id", "attempt", "status_code", "error", "duration_ms", "created_at"}
    bad = client.get(f"/api/v1/webhooks/{created['id']}/deliveries?cursor=nope", headers=org.headers())
    assert assert_error(bad, 422, "VALIDATION_ERROR")["details"]["errors"][0]["field"] == "cursor"
