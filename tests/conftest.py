"""A real PostgreSQL and a real HTTP server for the whole test session.

PostgreSQL is the embedded server (or `TEST_DATABASE_URL`, a server of your own); each session gets a
fresh database, migrated by the same code as `customer-master migrate`. The app runs in uvicorn on a
free loopback port, in a thread with its own event loop; tests talk to it over HTTP with httpx and
reach the database through `db` (coroutines run on the server's loop, with the server's engine).
Tests isolate themselves by creating their own org (`new_org`), which is what tenancy is for.
"""

import asyncio
import os
import secrets
import socket
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import text

from customer_master.app import create_app
from customer_master.auth import security
from customer_master.auth import service as auth_service
from customer_master.auth.models import Role
from customer_master.auth.schemas import ApiTokenCreate, UserCreate
from customer_master.auth.tenancy import OrgId
from customer_master.db.embedded import ensure_database, start_embedded_server
from customer_master.db.migrate import upgrade_to_head
from customer_master.db.session import Database

T = TypeVar("T")
PASSWORD = "correct-horse-battery"
JWT_SECRET = "test-secret-" + secrets.token_hex(16)


class Db:
    """Runs coroutines on the server's event loop, with the server's engine."""

    def __init__(self, loop: asyncio.AbstractEventLoop, database: Database) -> None:
        self.loop = loop
        self.database = database

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def fetch(self, sql: str, **params: Any) -> list[Any]:
        async def query() -> list[Any]:
            async with self.database.engine.connect() as connection:
                return list((await connection.execute(text(sql), params)).all())

        return self.run(query())

    def execute(self, sql: str, **params: Any) -> None:
        async def statement() -> None:
            async with self.database.engine.begin() as connection:
                await connection.execute(text(sql), params)

        self.run(statement())


@dataclass
class Server:
    base_url: str
    database_url: str
    db: Db


# The few long tests (40–100 s each, `pytest --durations 10`) are collected first: with `--dist worksteal`
# (Makefile) the other worker takes the short ones meanwhile and the two end together, instead of one
# waiting out a long test that happened to start last.
LONG_TEST_FILES = ("test_openapi_schemathesis.py", "test_crash.py", "test_chaos.py", "test_lifecycle.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in LONG_TEST_FILES)  # stable: the rest keep their order


def in_own_thread(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a thread of its own, for what calls `asyncio.run` (this file's `run_async`, Alembic's
    env.py in `upgrade_to_head`): that fails in this thread while Playwright's sync API keeps an event loop in
    it, as it does after a browser test in the same worker."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(function(*args))
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, also after a browser test in the same worker (see `in_own_thread`)."""
    return in_own_thread(asyncio.run, coro)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """Argon2id with its cheapest parameters in this process (the test servers run in it): the library's
    default profile costs ~0.16 s of CPU a hash and as much a check, and nearly every test makes an org with an
    admin, every browser test logs in. What is tested of passwords (the rules, the check, the lockout) is the
    same; a hash records its parameters, so each is checked with its own. Processes the tests start (the CLI,
    `serve`) hash as shipped. (An unknown user's login is still checked against `auth.service`'s dummy hash
    of the shipped cost: no test here may compare the time of logins.)"""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(security, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        yield


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    server_url = os.environ.get("TEST_DATABASE_URL") or start_embedded_server(tmp_path_factory.mktemp("pg"))
    url = run_async(ensure_database(server_url, f"cm_test_{os.getpid()}_{secrets.token_hex(3)}"))
    in_own_thread(upgrade_to_head, url)
    return url


@pytest.fixture
def scratch_database(database_url: str) -> Iterator[str]:
    """An empty database of its own on the test server (not migrated), dropped afterwards."""
    name = f"cm_scratch_{os.getpid()}_{secrets.token_hex(3)}"
    url = run_async(ensure_database(database_url, name))
    yield url

    async def drop() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    run_async(drop())


@contextmanager
def serve_app(app: FastAPI) -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    """Serve `app` with uvicorn on a free loopback port, in a thread with its own event loop."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uvicorn_server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(uvicorn_server.serve(),), daemon=True)
    thread.start()
    for _ in range(200):
        if uvicorn_server.started:
            break
        threading.Event().wait(0.05)
    assert uvicorn_server.started, "the test server did not start"
    try:
        yield f"http://127.0.0.1:{port}", loop
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[Server]:
    app = create_app(database_url, JWT_SECRET, token_ttl_s=3600, pool_size=20)
    with serve_app(app) as (base_url, loop):
        yield Server(base_url, database_url, Db(loop, app.state.db))


@pytest.fixture(scope="session")
def db(server: Server) -> Db:
    return server.db


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield http


@dataclass
class OrgContext:
    """An org of its own for one test: its admin user and one API token per role."""

    id: uuid.UUID
    slug: str
    admin_email: str
    tokens: dict[Role, str] = field(default_factory=dict)

    def headers(self, role: Role = Role.ADMIN) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def make_org(db: Db) -> OrgContext:
    slug = "org-" + secrets.token_hex(5)

    async def create() -> OrgContext:
        async with db.database.transaction() as session:
            org = await auth_service.create_org(session, slug, f"Org {slug}")
            org_id = OrgId(org.id)
            admin = UserCreate(email=f"admin@{slug}.example.com", name="Admin", role=Role.ADMIN, password=PASSWORD)
            await auth_service.create_user(session, org_id, admin)
            context = OrgContext(org.id, slug, admin.email)
            for role in Role:
                _, token = await auth_service.create_api_token(
                    session, org_id, ApiTokenCreate(name=f"test-{role.value.lower()}", role=role)
                )
                context.tokens[role] = token
            return context

    return db.run(create())


@pytest.fixture
def org(db: Db) -> OrgContext:
    return make_org(db)


@pytest.fixture
def other_org(db: Db) -> OrgContext:
    return make_org(db)


def customer_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Muster GmbH",
        "erp_customer_number": "4711",
        "default_currency": "EUR",
        "default_language": "de-DE",
        "billing_address": {"street": "Musterstraße 1", "city": "München", "postal_code": "80331", "country": "DE"},
        "metadata": {"discount_group": "A"},
    }
    body.update(overrides)
    return body


def create_customer(client: httpx.Client, org: OrgContext, **overrides: Any) -> dict[str, Any]:
    response = client.post("/api/v1/customers", json=customer_body(**overrides), headers=org.headers())
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The one error shape, with the request id of the response header."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    if status == 422:
        assert error["details"]["errors"], "every 422 lists its problems"
    return error
