"""Login (API.md §3): tokens, one message for every wrong login, disabled users, throttling, /me."""

import httpx
import jwt
import pytest

from customer_master.auth.models import Role
from tests.auth.helpers import add_user, bearer, login, login_token
from tests.conftest import JWT_SECRET, Db, OrgContext, assert_error, make_org


def test_login_returns_a_bearer_token_that_identifies_the_user(client: httpx.Client, org: OrgContext) -> None:
    response = login(client, org.slug, org.admin_email)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    claims = jwt.decode(body["access_token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 3600
    me = client.get("/api/v1/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["user"]["email"] == org.admin_email


def test_login_email_is_case_insensitive_and_records_last_login(client: httpx.Client, org: OrgContext) -> None:
    assert login(client, org.slug, org.admin_email.upper()).status_code == 200

    users = client.get("/api/v1/users", headers=org.headers()).json()["items"]
    (admin,) = [user for user in users if user["email"] == org.admin_email]
    assert admin["last_login_at"] is not None


def test_wrong_org_email_or_password_are_401_with_one_message(
    client: httpx.Client, org: OrgContext, other_org: OrgContext
) -> None:
    attempts = [
        login(client, "no-such-org", org.admin_email),
        login(client, other_org.slug, org.admin_email),  # the user exists, in another org
        login(client, org.slug, "nobody@" + org.slug + ".example.com"),
        login(client, org.slug, org.admin_email, "wrong-password-123"),
    ]

    messages = {assert_error(response, 401, "AUTH_REQUIRED")["message"] for response in attempts}
    assert len(messages) == 1


def test_login_body_is_validated(client: httpx.Client) -> None:
    error = assert_error(client.post("/api/v1/auth/login", json={"org_slug": "x"}), 422, "VALIDATION_ERROR")
    assert {e["field"] for e in error["details"]["errors"]} == {"email", "password"}


def test_disabled_user_gets_403_with_the_right_password_and_401_with_a_wrong_one(
    client: httpx.Client, org: OrgContext
) -> None:
    user = add_user(client, org, role="OPS")
    patch = client.patch(f"/api/v1/users/{user['id']}", json={"status": "DISABLED"}, headers=org.headers())
    assert patch.status_code == 200

    assert_error(login(client, org.slug, user["email"]), 403, "FORBIDDEN")
    assert_error(login(client, org.slug, user["email"], "wrong-password-123"), 401, "AUTH_REQUIRED")


def test_token_issued_before_the_user_was_disabled_is_refused_afterwards(client: httpx.Client, org: OrgContext) -> None:
    user = add_user(client, org, role="INTEGRATOR")
    token = login_token(client, org.slug, user["email"])
    assert client.get("/api/v1/customers", headers=bearer(token)).status_code == 200

    client.patch(f"/api/v1/users/{user['id']}", json={"status": "DISABLED"}, headers=org.headers())

    assert_error(client.get("/api/v1/customers", headers=bearer(token)), 403, "FORBIDDEN")
    assert_error(client.get("/api/v1/me", headers=bearer(token)), 403, "FORBIDDEN")

    client.patch(f"/api/v1/users/{user['id']}", json={"status": "ACTIVE"}, headers=org.headers())
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200


def test_a_login_token_follows_the_users_current_role(client: httpx.Client, org: OrgContext) -> None:
    user = add_user(client, org, role="VIEWER")
    token = login_token(client, org.slug, user["email"])
    assert_error(client.get("/api/v1/users", headers=bearer(token)), 403, "FORBIDDEN")

    client.patch(f"/api/v1/users/{user['id']}", json={"role": "ADMIN"}, headers=org.headers())

    assert client.get("/api/v1/users", headers=bearer(token)).status_code == 200
    assert client.get("/api/v1/me", headers=bearer(token)).json()["user"]["role"] == "ADMIN"


def test_ten_failed_logins_lock_the_account_with_retry_after(client: httpx.Client, db: Db) -> None:
    org = make_org(db)
    for _ in range(10):
        assert_error(login(client, org.slug, org.admin_email, "wrong-password-123"), 401, "AUTH_REQUIRED")

    locked = login(client, org.slug, org.admin_email)  # even the right password

    assert_error(locked, 429, "RATE_LIMITED")
    retry_after = int(locked.headers["Retry-After"])
    assert 0 < retry_after <= 15 * 60
    assert_error(login(client, org.slug, org.admin_email, "wrong-password-123"), 429, "RATE_LIMITED")
    # Logins are throttled, not tokens: the admin's API token still works.
    assert client.get("/api/v1/me", headers=org.headers()).status_code == 200


def test_a_locked_account_does_not_lock_other_accounts(client: httpx.Client, db: Db) -> None:
    org, neighbour_org = make_org(db), make_org(db)
    colleague = add_user(client, org, role="OPS")
    for _ in range(10):
        login(client, org.slug, org.admin_email, "wrong-password-123")
    assert_error(login(client, org.slug, org.admin_email), 429, "RATE_LIMITED")

    assert login(client, org.slug, colleague["email"]).status_code == 200
    assert login(client, neighbour_org.slug, neighbour_org.admin_email).status_code == 200


def test_a_successful_login_clears_the_failures(client: httpx.Client, db: Db) -> None:
    org = make_org(db)
    for _ in range(9):
        login(client, org.slug, org.admin_email, "wrong-password-123")
    assert login(client, org.slug, org.admin_email).status_code == 200

    for _ in range(9):
        login(client, org.slug, org.admin_email, "wrong-password-123")
    assert login(client, org.slug, org.admin_email).status_code == 200


def test_failures_older_than_the_window_do_not_count(client: httpx.Client, db: Db) -> None:
    org = make_org(db)
    for _ in range(10):
        login(client, org.slug, org.admin_email, "wrong-password-123")
    assert_error(login(client, org.slug, org.admin_email), 429, "RATE_LIMITED")

    key = f"{org.slug}:{org.admin_email}"
    db.execute("UPDATE login_failure SET failed_at = failed_at - interval '16 minutes' WHERE account_key = :k", k=key)

    assert login(client, org.slug, org.admin_email).status_code == 200


def test_me_with_a_login_token(client: httpx.Client, org: OrgContext) -> None:
    token = login_token(client, org.slug, org.admin_email)

    body = client.get("/api/v1/me", headers=bearer(token)).json()

    assert body["user"]["email"] == org.admin_email
    assert body["user"]["role"] == "ADMIN"
    assert body["user"]["org_id"] == str(org.id)
    assert set(body["user"]) == {"id", "email", "name", "role", "org_id"}
    assert body["org"] == {"id": str(org.id), "slug": org.slug, "name": f"Org {org.slug}"}


@pytest.mark.parametrize("role", list(Role))
def test_me_with_an_api_token(client: httpx.Client, org: OrgContext, role: Role) -> None:
    body = client.get("/api/v1/me", headers=org.headers(role)).json()

    assert body["user"] is None
    assert set(body["token"]) == {"id", "name", "role"}
    assert body["token"]["name"] == f"test-{role.value.lower()}"
    assert body["token"]["role"] == role.value
    assert body["org"]["id"] == str(org.id)
    assert body["org"]["slug"] == org.slug


def test_me_needs_a_token(client: httpx.Client) -> None:
    assert_error(client.get("/api/v1/me"), 401, "AUTH_REQUIRED")
