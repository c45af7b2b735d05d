"""`GET/PATCH /api/v1/org/settings` (API.md §3): read by every role, a JSON Merge Patch by ADMIN."""

from typing import Any

import httpx
import pytest

from customer_master.auth.models import Role
from tests.conftest import Db, OrgContext, assert_error

DEFAULTS = {"customer_detection": {"auto_select_threshold": 0.90, "min_gap": 0.07, "public_domains_extra": []}}


def get_settings(client: httpx.Client, org: OrgContext, role: Role = Role.ADMIN) -> dict[str, Any]:
    response = client.get("/api/v1/org/settings", headers=org.headers(role))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def patch(client: httpx.Client, org: OrgContext, body: Any, role: Role = Role.ADMIN) -> httpx.Response:
    return client.patch("/api/v1/org/settings", json=body, headers=org.headers(role))


@pytest.mark.parametrize("role", list(Role))
def test_every_role_reads_the_defaults(client: httpx.Client, org: OrgContext, role: Role) -> None:
    assert get_settings(client, org, role) == DEFAULTS


def test_patch_merges_and_answers_the_settings(client: httpx.Client, org: OrgContext, db: Db) -> None:
    response = patch(client, org, {"customer_detection": {"min_gap": 0.1}})
    assert response.status_code == 200, response.text
    expected = {"customer_detection": {"auto_select_threshold": 0.9, "min_gap": 0.1, "public_domains_extra": []}}
    assert response.json() == expected
    response = patch(client, org, {"customer_detection": {"auto_select_threshold": 1}})
    expected["customer_detection"]["auto_select_threshold"] = 1.0
    assert response.json() == expected  # min_gap stays
    assert get_settings(client, org, Role.VIEWER) == expected
    (stored,) = db.fetch("SELECT settings_json FROM org WHERE id = :id", id=org.id)
    assert stored.settings_json == {"customer_detection": {"auto_select_threshold": 1, "min_gap": 0.1}}


def test_null_returns_a_setting_to_its_default(client: httpx.Client, org: OrgContext) -> None:
    patch(client, org, {"customer_detection": {"min_gap": 0.2, "auto_select_threshold": 0.5}})
    response = patch(client, org, {"customer_detection": {"min_gap": None}})
    assert response.json()["customer_detection"] == {
        "auto_select_threshold": 0.5,
        "min_gap": 0.07,
        "public_domains_extra": [],
    }
    assert patch(client, org, {"customer_detection": None}).json() == DEFAULTS
    assert patch(client, org, {}).json() == DEFAULTS


def test_extra_public_domains_are_normalised_like_contact_emails(client: httpx.Client, org: OrgContext) -> None:
    body = {"customer_detection": {"public_domains_extra": [" Firma-Mail.DE ", "xn--mller-kva.de", "firma-mail.de."]}}
    response = patch(client, org, body)
    assert response.status_code == 200, response.text
    assert response.json()["customer_detection"]["public_domains_extra"] == ["firma-mail.de", "müller.de"]
    response = patch(client, org, {"customer_detection": {"public_domains_extra": []}})
    assert response.json()["customer_detection"]["public_domains_extra"] == []


@pytest.mark.parametrize(
    ("detection", "field"),
    [
        ({"auto_select_threshold": 1.01}, "customer_detection.auto_select_threshold"),
        ({"auto_select_threshold": -0.1}, "customer_detection.auto_select_threshold"),
        ({"min_gap": 2}, "customer_detection.min_gap"),
        ({"min_gap": "0.1"}, "customer_detection.min_gap"),
        ({"min_gap": True}, "customer_detection.min_gap"),
        ({"public_domains_extra": "gmx.de"}, "customer_detection.public_domains_extra"),
        ({"public_domains_extra": ["not a domain"]}, "customer_detection.public_domains_extra.0"),
        ({"public_domains_extra": ["ok.de", "a@b.de"]}, "customer_detection.public_domains_extra.1"),
        ({"threshold": 0.5}, "customer_detection.threshold"),
    ],
)
def test_invalid_settings_are_422_and_change_nothing(
    client: httpx.Client, org: OrgContext, detection: dict[str, Any], field: str
) -> None:
    error = assert_error(patch(client, org, {"customer_detection": detection}), 422, "VALIDATION_ERROR")
    assert field in [e["field"] for e in error["details"]["errors"]]
    assert get_settings(client, org) == DEFAULTS


def test_unknown_top_level_key_is_422(client: httpx.Client, org: OrgContext) -> None:
    error = assert_error(patch(client, org, {"theme": "dark"}), 422, "VALIDATION_ERROR")
    assert [e["field"] for e in error["details"]["errors"]] == ["theme"]
    assert_error(patch(client, org, ["customer_detection"]), 422, "VALIDATION_ERROR")


def test_every_problem_is_listed(client: httpx.Client, org: OrgContext) -> None:
    body = {"customer_detection": {"auto_select_threshold": 5, "min_gap": -1}}
    error = assert_error(patch(client, org, body), 422, "VALIDATION_ERROR")
    assert {e["field"] for e in error["details"]["errors"]} == {
        "customer_detection.auto_select_threshold",
        "customer_detection.min_gap",
    }


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPS, Role.INTEGRATOR])
def test_only_admin_changes_settings(client: httpx.Client, org: OrgContext, role: Role) -> None:
    assert_error(patch(client, org, {"customer_detection": {"min_gap": 0.5}}, role), 403, "FORBIDDEN")
    assert get_settings(client, org) == DEFAULTS


def test_settings_belong_to_one_org(client: httpx.Client, org: OrgContext, other_org: OrgContext) -> None:
    patch(client, org, {"customer_detection": {"min_gap": 0.3}})
    assert get_settings(client, other_org) == DEFAULTS


def test_merge_patch_media_type_is_accepted(client: httpx.Client, org: OrgContext) -> None:
    response = client.patch(
        "/api/v1/org/settings",
        content=b'{"customer_detection": {"min_gap": 0.05}}',
        headers={**org.headers(), "content-type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["customer_detection"]["min_gap"] == 0.05


def test_settings_need_a_token(client: httpx.Client) -> None:
    assert_error(client.get("/api/v1/org/settings"), 401, "AUTH_REQUIRED")
