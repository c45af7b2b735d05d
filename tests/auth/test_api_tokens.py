"""API tokens (API.md §3): shown once, stored hashed, revoked at once, last use recorded."""

import hashlib

import httpx
import pytest

from tests.auth.helpers import bearer
from tests.conftest import Db, OrgContext, assert_error

TOKEN_KEYS = {"id", "name", "role", "created_at", "last_used_at"}


def create_token(client: httpx.Client, org: OrgContext, name: str = "erp-nightly", role: str = "INTEGRATOR") -> dict:
    response = client.post("/api/v1/api-tokens", json={"name": name, "role": role}, headers=org.headers())
    assert response.status_code == 201, response.text
    token: dict = response.json()
    return token


def test_create_shows_the_token_once_and_stores_only_its_hash(client: httpx.Client, org: OrgContext, db: Db) -> None:
    created = create_token(client, org)

    assert set(created) == TOKEN_KEYS | {"token"}
    assert created["name"] == "erp-nightly"
    assert created["role"] == "INTEGRATOR"
    assert created["last_used_at"] is None
    listed = client.get("/api/v1/api-tokens", headers=org.headers()).json()["items"]
    (mine,) = [token for token in listed if token["id"] == created["id"]]
    assert mine == {key: created[key] for key in TOKEN_KEYS}
    assert all(set(token) == TOKEN_KEYS for token in listed)
    assert created["token"] not in client.get("/api/v1/api-tokens", headers=org.headers()).text
    (row,) = db.fetch("SELECT token_hash FROM api_token WHERE id = :id", id=created["id"])
    assert row.token_hash != created["token"]
    assert row.token_hash == hashlib.sha256(created["token"].encode()).hexdigest()


def test_a_new_token_acts_with_its_role(client: httpx.Client, org: OrgContext) -> None:
    viewer = create_token(client, org, name="dashboard", role="VIEWER")

    me = client.get("/api/v1/me", headers=bearer(viewer["token"])).json()

    assert me["token"] == {"id": viewer["id"], "name": "dashboard", "role": "VIEWER"}
    assert client.get("/api/v1/customers", headers=bearer(viewer["token"])).status_code == 200
    assert_error(client.post("/api/v1/customers", json={}, headers=bearer(viewer["token"])), 403, "FORBIDDEN")


def test_last_used_at_is_set_after_use(client: httpx.Client, org: OrgContext) -> None:
    created = create_token(client, org)
    assert client.get("/api/v1/customers", headers=bearer(created["token"])).status_code == 200

    listed = client.get("/api/v1/api-tokens", headers=org.headers()).json()["items"]

    (used,) = [token for token in listed if token["id"] == created["id"]]
    assert used["last_used_at"] is not None
    assert used["last_used_at"] >= created["created_at"]


def test_delete_revokes_the_token_at_once(client: httpx.Client, org: OrgContext, db: Db) -> None:
    created = create_token(client, org)
    assert client.get("/api/v1/me", headers=bearer(created["token"])).status_code == 200

    response = client.delete(f"/api/v1/api-tokens/{created['id']}", headers=org.headers())

    assert response.status_code == 204
    assert response.content == b""
    assert_error(client.get("/api/v1/me", headers=bearer(created["token"])), 401, "AUTH_REQUIRED")
    assert_error(client.get("/api/v1/customers", headers=bearer(created["token"])), 401, "AUTH_REQUIRED")
    listed = client.get("/api/v1/api-tokens", headers=org.headers()).json()["items"]
    assert created["id"] not in {token["id"] for token in listed}
    assert db.fetch("SELECT id FROM api_token WHERE id = :id", id=created["id"]) == []
    again = client.delete(f"/api/v1/api-tokens/{created['id']}", headers=org.headers())
    assert_error(again, 404, "NOT_FOUND")


def test_a_token_may_delete_itself(client: httpx.Client, org: OrgContext) -> None:
    admin_token = create_token(client, org, name="short-lived", role="ADMIN")

    response = client.delete(f"/api/v1/api-tokens/{admin_token['id']}", headers=bearer(admin_token["token"]))

    assert response.status_code == 204
    assert_error(client.get("/api/v1/me", headers=bearer(admin_token["token"])), 401, "AUTH_REQUIRED")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "role": "OPS"},
        {"name": "x", "role": "ROOT"},
        {"role": "OPS"},
        {"name": "x"},
        {"name": "x" * 201, "role": "OPS"},
    ],
)
def test_invalid_token_request_is_422(client: httpx.Client, org: OrgContext, body: dict[str, str]) -> None:
    before = len(client.get("/api/v1/api-tokens", headers=org.headers()).json()["items"])

    assert_error(client.post("/api/v1/api-tokens", json=body, headers=org.headers()), 422, "VALIDATION_ERROR")

    assert len(client.get("/api/v1/api-tokens", headers=org.headers()).json()["items"]) == before


def test_unknown_api_token_is_401(client: httpx.Client) -> None:
    assert_error(client.get("/api/v1/me", headers=bearer("cm_not-a-real-token")), 401, "AUTH_REQUIRED")
