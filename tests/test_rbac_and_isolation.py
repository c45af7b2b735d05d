"""Roles (API.md §2) over every endpoint, and tenant isolation: another org's ids are 404, its rows invisible.

Making an org and its objects hashes passwords (Argon2, a good part of a second each): cases that must change
nothing (reads, and calls that are refused) share orgs made once per module and check with a snapshot that
they stayed unchanged; a call that may change data gets an org of its own.
"""

import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from customer_master.auth.models import Role
from tests.auth.helpers import add_user
from tests.conftest import (
    PASSWORD,
    Db,
    OrgContext,
    Server,
    assert_error,
    create_customer,
    customer_body,
    make_org,
)

ALL = frozenset(Role)
WRITERS = frozenset({Role.INTEGRATOR, Role.ADMIN})
ADMIN = frozenset({Role.ADMIN})
# https to a host that does not resolve: accepted when set (it may resolve later), never reached.
WEBHOOK_URL = "https://hooks.example.invalid/cm"
IMPORT_CSV = b"name,erp_customer_number,default_currency,default_language\nImported GmbH,IMP-1,EUR,de-DE\n"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as in API.md: {id} and {contact_id} are filled from the test's objects
    allowed: frozenset[Role]
    status: int  # on success
    body: Callable[[], Any] | None = None  # its strings' {id}, {other_id}, … are filled like the path
    files: dict[str, tuple[str, bytes, str]] | None = None

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def takes_ids(self) -> bool:
        body = json.dumps(self.body() if self.body else None)
        return re.search(r"\{[a-z_]+\}", self.path + body) is not None

    def may_change_data(self, role: Role) -> bool:
        """Whether the call, made with `role`, may change the org's rows when it works as intended."""
        return self.method != "GET" and role in self.allowed


def _new_user() -> dict[str, str]:
    return {"email": f"new-{secrets.token_hex(3)}@example.com", "role": "VIEWER", "password": PASSWORD}


ENDPOINTS = [
    Endpoint("GET", "/api/v1/me", ALL, 200),
    Endpoint("GET", "/api/v1/customers", ALL, 200),
    Endpoint("GET", "/api/v1/customers/{id}", ALL, 200),
    Endpoint("POST", "/api/v1/customers", WRITERS, 201, lambda: customer_body(erp_customer_number="NEW-1")),
    Endpoint("PATCH", "/api/v1/customers/{id}", WRITERS, 200, lambda: {"name": "Renamed GmbH"}),
    Endpoint("DELETE", "/api/v1/customers/{id}", ADMIN, 204),
    Endpoint("GET", "/api/v1/customers/{id}/contacts", ALL, 200),
    Endpoint("POST", "/api/v1/customers/{id}/contacts", WRITERS, 201, lambda: {"email": "new@muster.de"}),
    Endpoint("PATCH", "/api/v1/customers/{id}/contacts/{contact_id}", WRITERS, 200, lambda: {"name": "Moritz"}),
    Endpoint("DELETE", "/api/v1/customers/{id}/contacts/{contact_id}", WRITERS, 204),
    Endpoint("POST", "/api/v1/customers/detect", ALL, 200, lambda: {"from_email": "einkauf@muster.de"}),
    Endpoint("GET", "/api/v1/users", ADMIN, 200),
    Endpoint("POST", "/api/v1/users", ADMIN, 201, _new_user),
    Endpoint("PATCH", "/api/v1/users/{user_id}", ADMIN, 200, lambda: {"name": "Renamed"}),
    Endpoint("GET", "/api/v1/api-tokens", ADMIN, 200),
    Endpoint("POST", "/api/v1/api-tokens", ADMIN, 201, lambda: {"name": "new", "role": "VIEWER"}),
    Endpoint("DELETE", "/api/v1/api-tokens/{token_id}", ADMIN, 204),
    Endpoint("GET", "/api/v1/org/settings", ALL, 200),
    Endpoint(
        "PATCH", "/api/v1/org/settings", ADMIN, 200, lambda: {"customer_detection": {"auto_select_threshold": 0.8}}
    ),
    Endpoint("POST", "/api/v1/imports/customers", WRITERS, 200, files={"file": ("c.csv", IMPORT_CSV, "text/csv")}),
    Endpoint("GET", "/api/v1/imports", WRITERS, 200),
    Endpoint("GET", "/api/v1/exports/customers.csv", WRITERS, 200),
    Endpoint("GET", "/api/v1/customers/{id}/history", ALL, 200),
    Endpoint("GET", "/api/v1/events", WRITERS, 200),
    Endpoint("GET", "/api/v1/webhooks", ADMIN, 200),
    Endpoint("POST", "/api/v1/webhooks", ADMIN, 201, lambda: {"url": WEBHOOK_URL, "types": ["customer.*"]}),
    Endpoint("GET", "/api/v1/webhooks/{webhook_id}", ADMIN, 200),
    Endpoint("PATCH", "/api/v1/webhooks/{webhook_id}", ADMIN, 200, lambda: {"description": "Renamed"}),
    Endpoint("DELETE", "/api/v1/webhooks/{webhook_id}", ADMIN, 204),
    Endpoint("POST", "/api/v1/webhooks/{webhook_id}/rotate-secret", ADMIN, 200),
    Endpoint("GET", "/api/v1/webhooks/{webhook_id}/deliveries", ADMIN, 200),
    Endpoint("POST", "/api/v1/webhooks/{webhook_id}/replay", ADMIN, 202, lambda: {"after": "0"}),
    Endpoint(
        "POST", "/api/v1/customers/merge", WRITERS, 200, lambda: {"survivor_id": "{id}", "merged_ids": ["{other_id}"]}
    ),
    Endpoint("POST", "/api/v1/merges/{merge_id}/undo", WRITERS, 200),
    Endpoint("GET", "/api/v1/duplicates", ALL, 200),
    Endpoint("POST", "/api/v1/duplicates/dismiss", WRITERS, 204, lambda: {"customer_ids": ["{id}", "{other_id}"]}),
]
# In API.md the users', tokens' and webhooks' path parameter is `id` too; here they get their own names to fill
# them in.
OPENAPI_PATH = {"{user_id}": "{id}", "{token_id}": "{id}", "{webhook_id}": "{id}"}
NOT_IN_MATRIX = {("POST", "/api/v1/auth/login")}  # no token: the one public operation


def openapi_path(endpoint: Endpoint) -> str:
    path = endpoint.path
    for ours, theirs in OPENAPI_PATH.items():
        path = path.replace(ours, theirs)
    return path


@pytest.fixture(scope="module")
def served_operations(server: Server) -> set[tuple[str, str]]:
    document = httpx.get(f"{server.base_url}/openapi.json").json()
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


@dataclass
class Objects:
    """One org's objects that the id-taking endpoints act on."""

    ids: dict[str, str]

    def fill(self, path: str) -> str:
        return path.format(**self.ids)

    def fill_body(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.fill(value)
        if isinstance(value, list):
            return [self.fill_body(item) for item in value]
        if isinstance(value, dict):
            return {key: self.fill_body(item) for key, item in value.items()}
        return value


def make_objects(client: httpx.Client, org: OrgContext, erp: str = "4711") -> Objects:
    customer = create_customer(
        client,
        org,
        erp_customer_number=erp,
        contacts=[{"email": "einkauf@muster.de", "name": "Max", "is_primary": True}],
    )
    other = create_customer(client, org, name="Muster AG", erp_customer_number=None)
    merged = create_customer(client, org, name="Muster KG", erp_customer_number=None)
    merge = client.post(
        "/api/v1/customers/merge",
        json={"survivor_id": customer["id"], "merged_ids": [merged["id"]]},
        headers=org.headers(),
    )
    assert merge.status_code == 200, merge.text
    user = add_user(client, org, role="OPS")
    token = client.post("/api/v1/api-tokens", json={"name": "victim", "role": "VIEWER"}, headers=org.headers())
    assert token.status_code == 201
    webhook = client.post("/api/v1/webhooks", json={"url": WEBHOOK_URL}, headers=org.headers())
    assert webhook.status_code == 201, webhook.text
    return Objects(
        {
            "id": customer["id"],
            "contact_id": customer["contacts"][0]["id"],
            "user_id": user["id"],
            "token_id": token.json()["id"],
            "webhook_id": webhook.json()["id"],
            "other_id": other["id"],
            "merge_id": merge.json()["merge_id"],
        }
    )


@dataclass
class OrgWithObjects:
    org: OrgContext
    objects: Objects


def org_with_objects(db: Db, client: httpx.Client) -> OrgWithObjects:
    org = make_org(db)
    return OrgWithObjects(org, make_objects(client, org))


@pytest.fixture(scope="module")
def module_client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def shared(db: Db, module_client: httpx.Client) -> OrgWithObjects:
    """An org with its objects for every case in this module that must leave it unchanged."""
    return org_with_objects(db, module_client)


@pytest.fixture(scope="module")
def shared_other(db: Db, module_client: httpx.Client) -> OrgWithObjects:
    """Another such org (the victim in the isolation cases), with the same ERP number and e-mail."""
    return org_with_objects(db, module_client)


def call(
    client: httpx.Client, endpoint: Endpoint, objects: Objects, headers: dict[str, str], path: str | None = None
) -> httpx.Response:
    """The endpoint on `objects` (its path, or `path`, and its body filled from them)."""
    body = objects.fill_body(endpoint.body()) if endpoint.body else None
    url = path if path is not None else objects.fill(endpoint.path)
    return client.request(endpoint.method, url, json=body, files=endpoint.files, headers=headers)


def snapshot(db: Db, org_id: Any) -> dict[str, list[Any]]:
    """Every row an org owns (API token use times aside, which reading may move)."""
    tables = ["org", "customer", "customer_contact", "app_user", "api_token", "webhook_endpoint", "customer_merge"]
    rows: dict[str, list[Any]] = {}
    for table in tables:
        column = "id" if table == "org" else "org_id"
        rows[table] = [
            row[0]
            for row in db.fetch(
                f"SELECT to_jsonb(t) - 'last_used_at' FROM {table} t WHERE {column} = :org ORDER BY id", org=org_id
            )
        ]
    return rows


# --- roles ------------------------------------------------------------------------------------


def test_the_matrix_covers_every_served_operation(served_operations: set[tuple[str, str]]) -> None:
    in_matrix = {(endpoint.method, openapi_path(endpoint)) for endpoint in ENDPOINTS}
    api_operations = {op for op in served_operations if op[1].startswith("/api/v1/")}

    assert api_operations - NOT_IN_MATRIX - in_matrix == set()


@pytest.mark.parametrize("role", list(Role), ids=lambda role: role.value)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda endpoint: endpoint.label)
def test_role_matrix(
    client: httpx.Client,
    shared: OrgWithObjects,
    db: Db,
    served_operations: set[tuple[str, str]],
    endpoint: Endpoint,
    role: Role,
) -> None:
    assert (endpoint.method, openapi_path(endpoint)) in served_operations, f"{endpoint.label} is not served"
    mine = org_with_objects(db, client) if endpoint.may_change_data(role) else shared
    org, objects = mine.org, mine.objects
    before = snapshot(db, org.id)

    response = call(client, endpoint, objects, org.headers(role))

    if role in endpoint.allowed:
        assert response.status_code == endpoint.status, response.text
    else:
        assert_error(response, 403, "FORBIDDEN")
    if mine is shared:
        assert snapshot(db, org.id) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda endpoint: endpoint.label)
def test_no_token_is_401_everywhere(
    client: httpx.Client, db: Db, shared: OrgWithObjects, served_operations: set[tuple[str, str]], endpoint: Endpoint
) -> None:
    assert (endpoint.method, openapi_path(endpoint)) in served_operations, f"{endpoint.label} is not served"
    before = snapshot(db, shared.org.id)

    assert_error(call(client, endpoint, shared.objects, {}), 401, "AUTH_REQUIRED")
    assert snapshot(db, shared.org.id) == before


def test_login_tokens_follow_the_same_matrix(client: httpx.Client, org: OrgContext) -> None:
    """The matrix above uses API tokens; a logged-in user of each role is held to the same rules."""
    customer = create_customer(client, org)
    for role in Role:
        user = add_user(client, org, role=role.value)
        login = client.post(
            "/api/v1/auth/login", json={"org_slug": org.slug, "email": user["email"], "password": PASSWORD}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

        assert client.get(f"/api/v1/customers/{customer['id']}", headers=headers).status_code == 200
        patch = client.patch(f"/api/v1/customers/{customer['id']}", json={"name": "X"}, headers=headers)
        assert patch.status_code == (200 if role in WRITERS else 403)
        assert client.get("/api/v1/users", headers=headers).status_code == (200 if role is Role.ADMIN else 403)


# --- isolation --------------------------------------------------------------------------------

ID_TAKING = [endpoint for endpoint in ENDPOINTS if endpoint.takes_ids]


@pytest.mark.parametrize("endpoint", ID_TAKING, ids=lambda endpoint: endpoint.label)
def test_another_orgs_ids_are_not_found(
    client: httpx.Client,
    shared: OrgWithObjects,
    shared_other: OrgWithObjects,
    db: Db,
    served_operations: set[tuple[str, str]],
    endpoint: Endpoint,
) -> None:
    assert (endpoint.method, openapi_path(endpoint)) in served_operations, f"{endpoint.label} is not served"
    # The caller's org has objects of its own, with the same ERP number and e-mail.
    org, theirs, other_org = shared.org, shared_other.objects, shared_other.org
    before = snapshot(db, org.id), snapshot(db, other_org.id)

    for role in Role:
        response = call(client, endpoint, theirs, org.headers(role))

        if role in endpoint.allowed:
            assert_error(response, 404, "NOT_FOUND")
        else:
            assert_error(response, 403, "FORBIDDEN")

    assert (snapshot(db, org.id), snapshot(db, other_org.id)) == before


@pytest.mark.parametrize("endpoint", [e for e in ID_TAKING if "{contact_id}" in e.path], ids=lambda e: e.label)
def test_a_contact_is_found_only_under_its_own_customer(
    client: httpx.Client, org: OrgContext, other_org: OrgContext, db: Db, endpoint: Endpoint
) -> None:
    mine = make_objects(client, org)
    sibling = create_customer(client, org, erp_customer_number="4712", contacts=[{"email": "x@sibling.de"}])
    theirs = make_objects(client, other_org)
    before = snapshot(db, org.id), snapshot(db, other_org.id)

    wrong_customer = endpoint.path.format(id=sibling["id"], contact_id=mine.ids["contact_id"])
    their_contact = endpoint.path.format(id=mine.ids["id"], contact_id=theirs.ids["contact_id"])
    their_customer = endpoint.path.format(id=theirs.ids["id"], contact_id=mine.ids["contact_id"])

    for path in (wrong_customer, their_contact, their_customer):
        assert_error(call(client, endpoint, mine, org.headers(), path), 404, "NOT_FOUND")
    assert (snapshot(db, org.id), snapshot(db, other_org.id)) == before


@pytest.fixture(scope="module")
def orgs_for_lists(db: Db, module_client: httpx.Client) -> tuple[OrgContext, OrgContext]:
    """An org without customers, and another org with customers that the list queries below match (the list
    cases only read)."""
    org, other_org = make_org(db), make_org(db)
    create_customer(
        module_client,
        other_org,
        name="Other Muster AG",
        erp_customer_number="OTH-1",
        contacts=[{"email": "einkauf@other.example", "is_primary": True}],
    )
    create_customer(module_client, other_org, name="Muster GmbH", erp_customer_number="4711")
    return org, other_org


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"q": "Muster"},
        {"q": "Other"},
        {"q": "OTH-"},
        {"erp_number": "OTH-1"},
        {"email": "einkauf@other.example"},
        {"email": "EINKAUF@other.example", "q": "other"},
    ],
)
@pytest.mark.parametrize("role", list(Role), ids=lambda role: role.value)
def test_customer_lists_never_show_another_orgs_rows(
    client: httpx.Client, orgs_for_lists: tuple[OrgContext, OrgContext], query: dict[str, str], role: Role
) -> None:
    org, other_org = orgs_for_lists

    response = client.get("/api/v1/customers", params=query, headers=org.headers(role))

    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}
    theirs = client.get("/api/v1/customers", params=query, headers=other_org.headers(role)).json()["items"]
    assert theirs, "the query matches the other org's customers"


def test_own_customers_are_listed_but_not_the_other_orgs(
    client: httpx.Client, org: OrgContext, other_org: OrgContext
) -> None:
    mine = create_customer(client, org, contacts=[{"email": "einkauf@muster.de"}])
    create_customer(client, other_org, contacts=[{"email": "einkauf@muster.de"}])

    for query in ({}, {"q": "muster"}, {"erp_number": "4711"}, {"email": "einkauf@muster.de"}, {"q": "47"}):
        items = client.get("/api/v1/customers", params=query, headers=org.headers(Role.VIEWER)).json()["items"]
        assert [item["id"] for item in items] == [mine["id"]], query


def test_user_and_token_lists_never_show_another_orgs_rows(
    client: httpx.Client, org: OrgContext, other_org: OrgContext
) -> None:
    theirs = make_objects(client, other_org)
    their_user_ids = {u["id"] for u in client.get("/api/v1/users", headers=other_org.headers()).json()["items"]}
    their_token_ids = {t["id"] for t in client.get("/api/v1/api-tokens", headers=other_org.headers()).json()["items"]}
    assert theirs.ids["user_id"] in their_user_ids
    assert theirs.ids["token_id"] in their_token_ids

    users = client.get("/api/v1/users", headers=org.headers()).json()["items"]
    tokens = client.get("/api/v1/api-tokens", headers=org.headers()).json()["items"]

    assert [user["email"] for user in users] == [org.admin_email]
    assert not their_user_ids & {user["id"] for user in users}
    assert {token["name"] for token in tokens} == {f"test-{role.value.lower()}" for role in Role}
    assert not their_token_ids & {token["id"] for token in tokens}


def test_an_api_token_cannot_be_used_to_reach_another_org(
    client: httpx.Client, org: OrgContext, other_org: OrgContext
) -> None:
    """Nothing in a request can switch the org: it comes from the token alone."""
    theirs = create_customer(client, other_org)
    headers = org.headers() | {"X-Org-Id": str(other_org.id), "X-Org": other_org.slug}

    assert_error(client.get(f"/api/v1/customers/{theirs['id']}", headers=headers), 404, "NOT_FOUND")
    assert client.get("/api/v1/me", headers=headers).json()["org"]["id"] == str(org.id)


def test_detection_never_names_another_orgs_customer(
    client: httpx.Client, org: OrgContext, other_org: OrgContext, served_operations: set[tuple[str, str]]
) -> None:
    assert ("POST", "/api/v1/customers/detect") in served_operations, "detection is not served"
    create_customer(
        client,
        other_org,
        name="Other Muster AG",
        erp_customer_number="OTH-1",
        contacts=[{"email": "einkauf@other.example", "is_primary": True}],
    )
    body = {
        "from_email": "Einkauf <einkauf@other.example>",
        "document_text": "Other Muster AG\nKundennr: OTH-1",
        "customer_hint": {"name": "Other Muster AG", "erp_customer_number": "OTH-1"},
    }

    for role in Role:
        response = client.post("/api/v1/customers/detect", json=body, headers=org.headers(role))
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "NOT_FOUND", "selected_customer_id": None, "candidates": []}
    assert client.post("/api/v1/customers/detect", json=body, headers=other_org.headers()).json()["candidates"]
