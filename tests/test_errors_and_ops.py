"""The error shape and request ids (API.md §1), and the operations endpoints (API.md §8)."""

import re
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from customer_master.app import create_app
from customer_master.auth.models import Role
from tests.conftest import JWT_SECRET, OrgContext, assert_error, create_customer, customer_body, serve_app

ERROR_KEYS = {"code", "message", "details", "request_id"}


# --- the error shape and request ids ----------------------------------------------------------


def test_errors_have_exactly_the_one_shape(client: httpx.Client, org: OrgContext) -> None:
    responses = [
        client.get("/api/v1/customers"),  # 401
        client.post("/api/v1/customers", json=customer_body(), headers=org.headers(Role.VIEWER)),  # 403
        client.get(f"/api/v1/customers/{uuid.uuid4()}", headers=org.headers()),  # 404
        client.put("/api/v1/customers", json={}, headers=org.headers()),  # 405
        client.post("/api/v1/customers", json={"name": ""}, headers=org.headers()),  # 422
        client.post("/api/v1/customers", content=b"name=x", headers=org.headers()),  # 415
    ]
    create_customer(client, org)
    responses.append(client.post("/api/v1/customers", json=customer_body(), headers=org.headers()))  # 409

    for response in responses:
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert set(body) == {"error"}
        assert set(body["error"]) == ERROR_KEYS
        assert isinstance(body["error"]["details"], dict)
        assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert [r.status_code for r in responses] == [401, 403, 404, 405, 422, 415, 409]


def test_a_request_id_is_made_for_every_response(client: httpx.Client) -> None:
    first, second = client.get("/healthz"), client.get("/healthz")

    assert first.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("request_id", ["abc-123", "x" * 128, "order 4711 / retry #2 ~!@", "a"])
def test_the_clients_request_id_is_echoed(client: httpx.Client, request_id: str) -> None:
    ok = client.get("/healthz", headers={"X-Request-ID": request_id})
    error = client.get("/api/v1/me", headers={"X-Request-ID": request_id})

    assert ok.headers["x-request-id"] == request_id
    assert error.headers["x-request-id"] == request_id
    assert assert_error(error, 401, "AUTH_REQUIRED")["request_id"] == request_id


@pytest.mark.parametrize(
    "request_id", [b"x" * 129, b"tab\tinside", "gr\u00fc\u00dfe".encode("latin-1"), "\u00e9t\u00e9".encode()]
)
def test_an_invalid_request_id_is_replaced(client: httpx.Client, request_id: bytes) -> None:
    response = client.get("/api/v1/me", headers={b"X-Request-ID": request_id})

    replaced = response.headers["x-request-id"]
    assert replaced.encode() != request_id
    assert 0 < len(replaced) <= 128
    assert replaced.isascii()
    assert replaced.isprintable()
    assert assert_error(response, 401, "AUTH_REQUIRED")["request_id"] == replaced


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/nothing-here"),
        ("GET", "/nothing-here"),
        ("GET", "/api/v1/customers/{id}/nothing"),
        ("POST", "/api/v1/nothing-here"),
        ("DELETE", "/api/v1"),
        ("GET", "/api/v1/customers/"),
    ],
)
def test_an_unknown_route_is_404(client: httpx.Client, org: OrgContext, method: str, path: str) -> None:
    response = client.request(method, path.format(id=uuid.uuid4()), headers=org.headers())

    assert_error(response, 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/customers"),
        ("DELETE", "/api/v1/customers"),
        ("POST", "/api/v1/customers/{id}"),
        ("PUT", "/api/v1/customers/{id}"),
        ("GET", "/api/v1/auth/login"),
        ("DELETE", "/api/v1/users/{id}"),
        ("PATCH", "/api/v1/api-tokens/{id}"),
        ("POST", "/healthz"),
    ],
)
def test_a_wrong_method_on_an_existing_path_is_405(
    client: httpx.Client, org: OrgContext, method: str, path: str
) -> None:
    url = path.format(id=uuid.uuid4())

    with_body = client.request(method, url, json={"name": "x"}, headers=org.headers())
    without_body = client.request(method, url, headers=org.headers())

    assert_error(with_body, 405, "METHOD_NOT_ALLOWED")
    assert_error(without_body, 405, "METHOD_NOT_ALLOWED")
    assert "allow" in {name.lower() for name in with_body.headers}


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/v1/api-tokens", "GET, POST"),
        ("/api/v1/customers/{id}", "GET, PATCH, DELETE"),
        ("/api/v1/customers/{id}/contacts/{id}", "PATCH, DELETE"),
        ("/api/v1/org/settings", "GET, PATCH"),
        ("/api/v1/users", "GET, POST"),
    ],
)
def test_a_405_allows_every_method_of_the_path(client: httpx.Client, org: OrgContext, path: str, allowed: str) -> None:
    response = client.request("PUT", path.format(id=uuid.uuid4()), headers=org.headers())

    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == allowed


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"name": "x",', "malformed"),
        (b"{'name': 'x'}", "malformed"),
        (b"", "empty"),
        (b'{"name": "M\xfcller GmbH"}', "utf-8"),
        (b'[{"name": "x"}]', "array"),
        (b'"Muster GmbH"', "string"),
        (b"42", "number"),
        (b"null", "null"),
        (b"true", "boolean"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/customers"),
        ("PATCH", "/api/v1/customers/{id}"),
        ("POST", "/api/v1/customers/{id}/contacts"),
        ("POST", "/api/v1/users"),
        ("POST", "/api/v1/auth/login"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_422(
    client: httpx.Client, org: OrgContext, method: str, path: str, content: bytes, reason: str
) -> None:
    customer = create_customer(client, org)
    headers = org.headers() | {"Content-Type": "application/json"}

    response = client.request(method, path.format(id=customer["id"]), content=content, headers=headers)

    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert isinstance(error["details"]["errors"], list)
    assert all(set(e) == {"field", "reason"} for e in error["details"]["errors"])
    after = client.get(f"/api/v1/customers/{customer['id']}", headers=org.headers()).json()
    assert after == customer


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
)
def test_a_body_that_is_not_json_is_415(client: httpx.Client, org: OrgContext, content_type: str | None) -> None:
    headers = org.headers() | ({"Content-Type": content_type} if content_type else {})

    response = client.post("/api/v1/customers", content=b'{"name": "x"}', headers=headers)

    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert client.get("/api/v1/customers", headers=org.headers()).json()["items"] == []


def test_json_media_types_with_parameters_and_merge_patch_are_accepted(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    headers = org.headers() | {"Content-Type": "application/merge-patch+json"}

    patch = client.patch(f"/api/v1/customers/{customer['id']}", content=b'{"name": "Neu GmbH"}', headers=headers)
    created = client.post(
        "/api/v1/customers/{id}/contacts".format(id=customer["id"]),
        content=b'{"email": "a@b.de"}',
        headers=org.headers() | {"Content-Type": "Application/JSON; charset=utf-8"},
    )

    assert patch.status_code == 200, patch.text
    assert created.status_code == 201, created.text


def test_a_json_body_over_one_mebibyte_is_413(client: httpx.Client, org: OrgContext) -> None:
    body = customer_body(metadata={"blob": "x" * (1024 * 1024)})

    assert_error(client.post("/api/v1/customers", json=body, headers=org.headers()), 413, "PAYLOAD_TOO_LARGE")


def test_bad_path_ids_and_queries_are_422_naming_the_parameter(client: httpx.Client, org: OrgContext) -> None:
    contact_path = f"/api/v1/customers/{uuid.uuid4()}/contacts/not-a-uuid"
    cases = [
        (client.get("/api/v1/customers/not-a-uuid", headers=org.headers()), "id"),
        (client.patch(contact_path, json={"name": "x"}, headers=org.headers()), "contact_id"),
        (client.delete("/api/v1/api-tokens/42", headers=org.headers()), "id"),
        (client.get("/api/v1/customers?limit=0", headers=org.headers()), "limit"),
        (client.get("/api/v1/customers?limit=201", headers=org.headers()), "limit"),
        (client.get("/api/v1/customers?limit=abc", headers=org.headers()), "limit"),
    ]
    for response, field in cases:
        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert field in {e["field"] for e in error["details"]["errors"]}


# --- bearer tokens ----------------------------------------------------------------------------


def _jwt(user_id: str, org_id: str, issued: datetime, ttl: timedelta, secret: str = JWT_SECRET) -> str:
    claims = {"sub": user_id, "org": org_id, "iat": issued, "exp": issued + ttl}
    return jwt.encode(claims, secret, algorithm="HS256")


def test_missing_invalid_and_expired_tokens_are_401(client: httpx.Client, org: OrgContext) -> None:
    login = client.post(
        "/api/v1/auth/login",
        json={"org_slug": org.slug, "email": org.admin_email, "password": "correct-horse-battery"},
    )
    user_id = client.get("/api/v1/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}).json()[
        "user"
    ]["id"]
    now = datetime.now(UTC)
    valid = _jwt(user_id, str(org.id), now, timedelta(minutes=5))
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {valid}"}).status_code == 200

    authorizations = [
        None,
        "",
        "Bearer",
        "Bearer not-a-token",
        "Basic " + "YWRtaW46cGFzc3dvcmQ=",
        org.headers()["Authorization"].replace("Bearer ", "Token "),
        f"Bearer {_jwt(user_id, str(org.id), now - timedelta(hours=2), timedelta(hours=1))}",  # expired
        f"Bearer {_jwt(user_id, str(org.id), now, timedelta(minutes=5), secret='another-secret-' * 3)}",
        f"Bearer {_jwt(str(uuid.uuid4()), str(org.id), now, timedelta(minutes=5))}",  # no such user
        f"Bearer {_jwt(user_id, str(uuid.uuid4()), now, timedelta(minutes=5))}",  # the user, another org
        f"Bearer {jwt.encode({'sub': user_id, 'org': str(org.id)}, JWT_SECRET, algorithm='HS256')}",  # no exp
        f"Bearer {jwt.encode({'sub': user_id, 'exp': now + timedelta(minutes=5)}, JWT_SECRET)}",  # no org
        f"Bearer {jwt.encode({'sub': 'x', 'org': 'y', 'exp': now + timedelta(minutes=5)}, JWT_SECRET)}",
        f"Bearer {valid[:-4]}AAAA",  # signature altered
        "Bearer " + jwt.encode({"sub": user_id, "org": str(org.id), "exp": now + timedelta(minutes=5)}, "", "none"),
    ]
    for authorization in authorizations:
        headers = {} if authorization is None else {"Authorization": authorization}
        for method, path in (("GET", "/api/v1/me"), ("GET", "/api/v1/customers"), ("POST", "/api/v1/customers")):
            response = client.request(method, path, json=customer_body(), headers=headers)
            assert_error(response, 401, "AUTH_REQUIRED")
    assert client.get("/api/v1/customers", headers=org.headers()).json()["items"] == []


# --- operations -------------------------------------------------------------------------------


def test_healthz_and_readyz(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_metrics_in_prometheus_format_with_route_templates(client: httpx.Client, org: OrgContext) -> None:
    customer = create_customer(client, org)
    client.get(f"/api/v1/customers/{customer['id']}", headers=org.headers())
    client.get(f"/api/v1/customers/{uuid.uuid4()}", headers=org.headers())
    client.get("/api/v1/no-such-route")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE http_requests_total counter" in text
    assert "# TYPE http_request_duration_seconds histogram" in text
    assert "# TYPE customer_import_rows_total counter" in text
    assert re.search(r'http_requests_total\{[^}]*route="/api/v1/customers/\{id\}"[^}]*status="200"', text)
    assert re.search(r'http_requests_total\{[^}]*route="/api/v1/customers/\{id\}"[^}]*status="404"', text)
    assert re.search(r'http_request_duration_seconds_bucket\{[^}]*route="/api/v1/customers/\{id\}"', text)
    assert customer["id"] not in text
    assert "no-such-route" not in text  # unmatched paths share one label: no unbounded label values
    labels = re.findall(r'http_requests_total\{method="(\w+)",route="([^"]*)",status="(\d+)"\}', text)
    assert labels, "http_requests_total carries method, route and status"


def test_openapi_lists_every_api_operation(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}

    expected = {
        ("POST", "/api/v1/auth/login"),
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("PATCH", "/api/v1/users/{id}"),
        ("GET", "/api/v1/api-tokens"),
        ("POST", "/api/v1/api-tokens"),
        ("DELETE", "/api/v1/api-tokens/{id}"),
        ("GET", "/api/v1/customers"),
        ("POST", "/api/v1/customers"),
        ("GET", "/api/v1/customers/{id}"),
        ("PATCH", "/api/v1/customers/{id}"),
        ("DELETE", "/api/v1/customers/{id}"),
        ("GET", "/api/v1/customers/{id}/contacts"),
        ("POST", "/api/v1/customers/{id}/contacts"),
        ("PATCH", "/api/v1/customers/{id}/contacts/{contact_id}"),
        ("DELETE", "/api/v1/customers/{id}/contacts/{contact_id}"),
    }
    assert expected <= operations
    assert all(path.startswith("/api/v1/") for _, path in operations)
    assert document["openapi"].startswith("3.")
    assert client.get("/docs").status_code == 200


# --- the database is unreachable --------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


@pytest.fixture(
    scope="module",
    params=[
        "postgresql://cm:cm@127.0.0.1:{port}/cm",
        "postgresql://cm@/cm?host=/nonexistent-socket-dir",
    ],
    ids=["closed-port", "missing-socket"],
)
def unreachable_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A second app instance whose database does not answer (the shared test database is left alone)."""
    app = create_app(request.param.format(port=_closed_port()), JWT_SECRET, token_ttl_s=3600, pool_size=2)
    with serve_app(app) as (base_url, _):
        yield base_url


def test_without_a_database_readyz_is_503_and_api_calls_are_503(unreachable_server: str, org: OrgContext) -> None:
    with httpx.Client(base_url=unreachable_server, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        assert_error(client.get("/readyz"), 503, "SERVICE_UNAVAILABLE")
        calls = [
            client.get("/api/v1/customers", headers=org.headers()),
            client.post("/api/v1/customers", json=customer_body(), headers=org.headers()),
            client.get("/api/v1/me", headers=org.headers()),
            client.post(
                "/api/v1/auth/login",
                json={"org_slug": org.slug, "email": org.admin_email, "password": "correct-horse-battery"},
            ),
        ]
        for response in calls:
            assert_error(response, 503, "SERVICE_UNAVAILABLE")
        # Input errors that need no database are still reported as such.
        assert_error(client.get("/api/v1/nothing"), 404, "NOT_FOUND")
