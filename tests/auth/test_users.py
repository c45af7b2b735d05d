"""Users API (API.md §3): ADMIN lists, creates and changes the users of its org."""

import httpx
import pytest

from tests.auth.helpers import add_user, bearer, login, login_token
from tests.conftest import PASSWORD, Db, OrgContext, assert_error

USER_KEYS = {"id", "email", "name", "role", "status", "created_at", "last_login_at"}


def test_create_user_returns_201_and_the_user_can_log_in(client: httpx.Client, org: OrgContext, db: Db) -> None:
    body = {"email": f"  Ops@{org.slug}.Example.com ", "name": " Olga Ops ", "role": "OPS", "password": PASSWORD}

    response = client.post("/api/v1/users", json=body, headers=org.headers())

    assert response.status_code == 201, response.text
    user = response.json()
    assert set(user) == USER_KEYS
    assert user["email"] == f"ops@{org.slug}.example.com"
    assert user["name"] == "Olga Ops"
    assert user["role"] == "OPS"
    assert user["status"] == "ACTIVE"
    assert user["last_login_at"] is None
    token = login_token(client, org.slug, user["email"])
    assert client.get("/api/v1/me", headers=bearer(token)).json()["user"]["role"] == "OPS"
    (row,) = db.fetch("SELECT org_id, password_hash FROM app_user WHERE id = :id", id=user["id"])
    assert row.org_id == org.id
    assert row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash


def test_list_users_shows_the_orgs_users_without_secrets(client: httpx.Client, org: OrgContext) -> None:
    created = add_user(client, org, role="VIEWER")

    response = client.get("/api/v1/users", headers=org.headers())

    assert response.status_code == 200
    items = response.json()["items"]
    assert {user["email"] for user in items} == {org.admin_email, created["email"]}
    assert all(set(user) == USER_KEYS for user in items)


def test_duplicate_email_in_the_org_is_409_naming_the_existing_user(client: httpx.Client, org: OrgContext) -> None:
    existing = add_user(client, org)
    body = {"email": existing["email"].upper(), "role": "VIEWER", "password": PASSWORD}

    error = assert_error(client.post("/api/v1/users", json=body, headers=org.headers()), 409, "CONFLICT")

    assert error["details"] == {"field": "email", "existing_id": existing["id"]}


def test_the_same_email_may_exist_in_two_orgs(client: httpx.Client, org: OrgContext, other_org: OrgContext) -> None:
    body = {"email": "shared@example.com", "role": "OPS", "password": PASSWORD}

    assert client.post("/api/v1/users", json=body, headers=org.headers()).status_code == 201
    assert client.post("/api/v1/users", json=body, headers=other_org.headers()).status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@example.com", "role": "OPS", "password": "short-pw-11"}, "password"),
        ({"email": "a@example.com", "role": "OWNER", "password": PASSWORD}, "role"),
        ({"email": "a@example.com", "role": "ops", "password": PASSWORD}, "role"),
        ({"email": "not-an-email", "role": "OPS", "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": PASSWORD}, "role"),
        ({"email": "a@example.com", "role": "OPS", "password": PASSWORD, "status": "ACTIVE"}, "status"),
    ],
)
def test_invalid_user_is_422(client: httpx.Client, org: OrgContext, body: dict[str, str], field: str) -> None:
    error = assert_error(client.post("/api/v1/users", json=body, headers=org.headers()), 422, "VALIDATION_ERROR")

    assert field in {e["field"] for e in error["details"]["errors"]}
    assert len(client.get("/api/v1/users", headers=org.headers()).json()["items"]) == 1


def test_patch_changes_role_name_and_status(client: httpx.Client, org: OrgContext) -> None:
    user = add_user(client, org, role="VIEWER")

    response = client.patch(
        f"/api/v1/users/{user['id']}", json={"role": "INTEGRATOR", "name": "Ingo"}, headers=org.headers()
    )

    assert response.status_code == 200, response.text
    assert response.json() == user | {"role": "INTEGRATOR", "name": "Ingo"}
    disabled = client.patch(f"/api/v1/users/{user['id']}", json={"status": "DISABLED"}, headers=org.headers())
    assert disabled.json()["status"] == "DISABLED"
    assert disabled.json()["role"] == "INTEGRATOR"


def test_patch_password_replaces_the_old_one(client: httpx.Client, org: OrgContext) -> None:
    user = add_user(client, org)
    new_password = "a-brand-new-passphrase"

    response = client.patch(f"/api/v1/users/{user['id']}", json={"password": new_password}, headers=org.headers())

    assert response.status_code == 200
    assert "password" not in response.json()
    assert login(client, org.slug, user["email"], new_password).status_code == 200
    assert_error(login(client, org.slug, user["email"], PASSWORD), 401, "AUTH_REQUIRED")


@pytest.mark.parametrize(
    "body",
    [{"password": "too-short"}, {"role": "BOSS"}, {"status": "GONE"}, {"role": None}, {"email": "x@example.com"}],
)
def test_invalid_patch_is_422_and_changes_nothing(
    client: httpx.Client, org: OrgContext, body: dict[str, str | None]
) -> None:
    user = add_user(client, org)

    assert_error(client.patch(f"/api/v1/users/{user['id']}", json=body, headers=org.headers()), 422, "VALIDATION_ERROR")

    (after,) = [u for u in client.get("/api/v1/users", headers=org.headers()).json()["items"] if u["id"] == user["id"]]
    assert after == user
    assert login(client, org.slug, user["email"]).status_code == 200


def test_patch_of_an_unknown_user_is_404(client: httpx.Client, org: OrgContext) -> None:
    response = client.patch(
        "/api/v1/users/00000000-0000-4000-8000-000000000000", json={"name": "x"}, headers=org.headers()
    )
    assert_error(response, 404, "NOT_FOUND")
    error = assert_error(
        client.patch("/api/v1/users/42", json={"name": "x"}, headers=org.headers()), 422, "VALIDATION_ERROR"
    )
    assert error["details"]["errors"][0]["field"] == "id"
