"""Small helpers for the auth tests: log in, add a user over the API."""

import secrets
from typing import Any

import httpx

from tests.conftest import PASSWORD, OrgContext


def login(client: httpx.Client, slug: str, email: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/api/v1/auth/login", json={"org_slug": slug, "email": email, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login_token(client: httpx.Client, slug: str, email: str, password: str = PASSWORD) -> str:
    response = login(client, slug, email, password)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def add_user(
    client: httpx.Client, org: OrgContext, role: str = "OPS", password: str = PASSWORD, **fields: Any
) -> dict[str, Any]:
    body = {"email": f"user-{secrets.token_hex(4)}@{org.slug}.example.com", "name": "A User", "role": role}
    body.update(password=password, **fields)
    response = client.post("/api/v1/users", json=body, headers=org.headers())
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user
