"""API benchmark: get-one, `q=` search, `email=` filter and a full page walk over real HTTP at 100k customers.

What it does, in one run:

1. A fresh database: on the embedded PostgreSQL (a throw-away data directory), or on the server of
   `DATABASE_URL` when it is set (a new database `cm_bench_…` there, dropped afterwards). Migrated by the
   same code as `customer-master migrate`.
2. Seeds, set-based (generate_series, a few statements): 100,000 customers with 1–3 contacts each in the
   measured org — German company names with umlauts and legal forms, ERP numbers, addresses, e-mails —
   and 50,000 more in five other orgs (noise the tenant filter must skip). Then VACUUM ANALYZE.
3. Starts the real server as a user would (`customer-master serve` in its own process, with
   `DATABASE_URL` and `CM_JWT_SECRET`), logs in over HTTP as an OPS user and measures, with a few
   concurrent keep-alive clients, latency (p50/p95) and throughput of each request kind.
4. Beside each figure, the same queries as raw SQL on the same database with as many asyncpg
   connections: the data statements the service issues for that request (prepared, as the service's
   driver prepares them), i.e. the floor no HTTP service can beat.

The load generator is a minimal HTTP/1.1 keep-alive client on asyncio streams (uvloop when present):
on 2 cores it shares the CPU with the server and PostgreSQL, so it must cost far less than httpx would.

    .venv/bin/python bench/api.py                         # 100k customers, 4 clients, 10 s per scenario
    .venv/bin/python bench/api.py --customers 10000 --duration 3
    .venv/bin/python bench/api.py --workers 2 --keep             # two server processes; keep the database
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg

import common
from common import LEGAL_FORMS, TRADES, CpuMeter, drop_database, running_server
from customer_master.auth import repository as auth_repository
from customer_master.auth import service as auth_service
from customer_master.auth.models import Role
from customer_master.auth.schemas import ApiTokenCreate, UserCreate
from customer_master.auth.tenancy import OrgId
from customer_master.customers import repository as customer_repository
from customer_master.customers.repository import CustomerFilter
from customer_master.db.embedded import ensure_database, start_embedded_server, stop_embedded_server
from customer_master.db.migrate import upgrade_to_head
from customer_master.db.session import Database

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
PASSWORD = "bench-password-123"

# --- seed data ----------------------------------------------------------------------------------

SURNAMES = [
    *common.SURNAMES,
    "Größl", "Dürr", "Fürst", "Häusler", "Lüdtke", "Nüßlein", "Öztürk", "Rößler", "Süß", "Wöhrle",
]  # fmt: skip
CITIES = [
    ("München", "DE", "80"), ("Köln", "DE", "50"), ("Düsseldorf", "DE", "40"), ("Nürnberg", "DE", "90"),
    ("Würzburg", "DE", "97"), ("Lübeck", "DE", "23"), ("Göttingen", "DE", "37"), ("Osnabrück", "DE", "49"),
    ("Saarbrücken", "DE", "66"), ("Mönchengladbach", "DE", "41"), ("Tübingen", "DE", "72"), ("Berlin", "DE", "10"),
    ("Hamburg", "DE", "20"), ("Frankfurt am Main", "DE", "60"), ("Stuttgart", "DE", "70"), ("Leipzig", "DE", "04"),
    ("Dresden", "DE", "01"), ("Fürth", "DE", "90"), ("Zürich", "CH", "80"), ("Genève", "CH", "12"),
    ("Wien", "AT", "10"), ("Graz", "AT", "80"), ("Innsbruck", "AT", "60"), ("Linz", "AT", "40"),
]  # fmt: skip
FIRST_NAMES = [
    "Jürgen", "Jörg", "Björn", "Sören", "Günter", "Käthe", "Hans-Jürgen", "Uwe", "Anna", "Lena", "Jonas", "Lukas",
    "Sabine", "Stefan", "Thomas", "Andrea", "Michael", "Birgit", "Ömer", "Zoë", "René", "Frauke", "Dörte", "Maximilian",
]  # fmt: skip
STREETS = [*common.STREETS, "Am Bürgerpark"]

SEED_TABLE_SQL = """
CREATE TEMP TABLE seed ON COMMIT DROP AS
SELECT i, gen_random_uuid() AS id,
       ($2::text[])[s1] AS surname1, ($2::text[])[s2] AS surname2, ($3::text[])[t] AS trade,
       ($4::text[])[f] AS legal_form, ($5::text[])[c] AS city, ($6::text[])[c] AS country,
       ($7::text[])[st] AS street, ($8::text[])[c] AS postcode, ($9::text[])[fn] AS first_name,
       1 + abs(hashint4(i * 19 + 7)) % 3 AS contacts
  FROM (SELECT i,
               1 + abs(hashint4(i * 3 + 1)) % cardinality($2::text[]) AS s1,
               1 + abs(hashint4(i * 5 + 2)) % cardinality($2::text[]) AS s2,
               1 + abs(hashint4(i * 7 + 3)) % cardinality($3::text[]) AS t,
               1 + abs(hashint4(i * 11 + 4)) % cardinality($4::text[]) AS f,
               1 + abs(hashint4(i * 13 + 5)) % cardinality($5::text[]) AS c,
               1 + abs(hashint4(i * 17 + 6)) % cardinality($7::text[]) AS st,
               1 + abs(hashint4(i * 23 + 8)) % cardinality($9::text[]) AS fn
          FROM generate_series(1, $1::int) AS i) AS picks
"""

SEED_CUSTOMERS_SQL = """
INSERT INTO customer (id, org_id, name, erp_customer_number, default_currency, default_language,
                      billing_address_json, metadata_json)
SELECT id, $1::uuid,
       CASE i % 4
         WHEN 0 THEN surname1 || ' ' || trade || ' ' || legal_form
         WHEN 1 THEN trade || ' ' || surname1 || ' & ' || surname2 || ' ' || legal_form
         WHEN 2 THEN surname1 || ' ' || trade || ' ' || city || ' ' || legal_form
         ELSE trade || ' ' || surname1 || ' ' || legal_form
       END,
       CASE WHEN i % 25 = 0 THEN NULL ELSE '1' || lpad(i::text, 6, '0') END,
       CASE country WHEN 'CH' THEN 'CHF' ELSE 'EUR' END,
       CASE country WHEN 'CH' THEN 'de-CH' WHEN 'AT' THEN 'de-AT'
            ELSE (CASE WHEN i % 10 = 0 THEN 'en-GB' ELSE 'de-DE' END) END,
       jsonb_build_object(
         'street', street || ' ' || (1 + i % 120), 'street2', NULL, 'city', city,
         'postal_code', postcode || lpad((i % 1000)::text, 3, '0'), 'state', NULL, 'country', country),
       CASE WHEN i % 3 = 0 THEN jsonb_build_object('discount_group', chr(65 + i % 4)) END
  FROM seed
"""

# 1-3 contacts per customer, the first one primary; e-mail domains unique per customer.
SEED_CONTACTS_SQL = """
INSERT INTO customer_contact (org_id, customer_id, email, name, is_primary)
SELECT $1::uuid, id,
       CASE n WHEN 1 THEN 'einkauf'
              WHEN 2 THEN pg_temp.cm_bench_slug(first_name) || '.' || pg_temp.cm_bench_slug(surname2)
              ELSE 'bestellung' END
         || '@' || pg_temp.cm_bench_slug(surname1) || '-' || pg_temp.cm_bench_slug(trade) || '-' || i || '.de',
       CASE n WHEN 2 THEN first_name || ' ' || surname2 END,
       n = 1
  FROM seed CROSS JOIN LATERAL generate_series(1, contacts) AS n
"""

SLUG_FUNCTION = """
CREATE OR REPLACE FUNCTION pg_temp.cm_bench_slug(text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT trim(both '-' from regexp_replace(
    replace(replace(replace(replace(lower($1), 'ä', 'ae'), 'ö', 'oe'), 'ü', 'ue'), 'ß', 'ss'),
    '[^a-z0-9]+', '-', 'g'))
$$
"""


async def seed_org(conn: asyncpg.Connection, org_id: uuid.UUID, customers: int) -> None:
    """`customers` customers with their contacts in one org, in one transaction."""
    async with conn.transaction():
        await conn.execute(SLUG_FUNCTION)
        await conn.execute(
            SEED_TABLE_SQL,
            customers,
            SURNAMES,
            TRADES,
            LEGAL_FORMS,
            [c[0] for c in CITIES],
            [c[1] for c in CITIES],
            STREETS,
            [c[2] for c in CITIES],
            FIRST_NAMES,
        )
        await conn.execute(SEED_CUSTOMERS_SQL, org_id)
        await conn.execute(SEED_CONTACTS_SQL, org_id)


# --- the database and the server ----------------------------------------------------------------


@dataclass
class Setup:
    database_url: str
    admin_url: str  # for dropping the database afterwards (DATABASE_URL mode)
    database_name: str
    org_id: uuid.UUID
    user_id: uuid.UUID
    api_token: str = ""
    postmaster_pid: int | None = None  # the embedded server's, for its CPU time
    pg_version: str = ""
    customers: int = 0
    noise: int = 0
    seconds_seed: float = 0.0


async def create_users(database_url: str, slug: str) -> tuple[uuid.UUID, uuid.UUID, str]:
    """The measured org with an OPS user (password login) and a VIEWER API token, through the service code."""
    database = Database(database_url, pool_size=1)
    try:
        async with database.transaction() as session:
            org = await auth_service.create_org(session, slug, f"Bench {slug}")
            org_id = OrgId(org.id)
            user = UserCreate(email=f"ops@{slug}.example.com", name="Bench Ops", role=Role.OPS, password=PASSWORD)
            ops_user = await auth_service.create_user(session, org_id, user)
            _, token = await auth_service.create_api_token(
                session, org_id, ApiTokenCreate(name="bench", role=Role.VIEWER)
            )
        return org.id, ops_user.id, token
    finally:
        await database.dispose()


async def prepare_database(args: argparse.Namespace, workdir: Path) -> Setup:
    name = f"cm_bench_{secrets.token_hex(3)}"
    if os.environ.get("DATABASE_URL"):
        admin_url = os.environ["DATABASE_URL"]
    else:
        print(f"starting embedded PostgreSQL in {workdir}", flush=True)
        admin_url = await asyncio.to_thread(start_embedded_server, workdir)
    url = await ensure_database(admin_url, name)
    await asyncio.to_thread(upgrade_to_head, url)
    org_id, user_id, api_token = await create_users(url, "bench")
    setup = Setup(url, admin_url, name, org_id, user_id, api_token=api_token, customers=args.customers)
    if not os.environ.get("DATABASE_URL"):
        setup.postmaster_pid = int((workdir / "pgdata" / "postmaster.pid").read_text().split()[0])
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        setup.pg_version = await conn.fetchval("SHOW server_version")
        await conn.execute("SET synchronous_commit = off; SET maintenance_work_mem = '256MB'")
        print(f"seeding {args.customers:,} customers in the measured org …", flush=True)
        await seed_org(conn, org_id, args.customers)
        per_noise_org = args.noise // max(1, args.noise_orgs)
        for n in range(args.noise_orgs):
            noise_org = await conn.fetchval(
                "INSERT INTO org (slug, name) VALUES ($1, $2) RETURNING id", f"noise-{n}", f"Noise {n}"
            )
            await seed_org(conn, noise_org, per_noise_org)
            setup.noise += per_noise_org
        print("VACUUM ANALYZE, CHECKPOINT …", flush=True)
        await conn.execute("VACUUM ANALYZE")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")  # so that no checkpoint writes the seed while measuring
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM customer WHERE org_id = $1) AS customers,"
            " (SELECT count(*) FROM customer_contact WHERE org_id = $1) AS contacts,"
            " (SELECT count(*) FROM customer) AS all_customers",
            org_id,
        )
    finally:
        await conn.close()
    setup.seconds_seed = time.perf_counter() - started
    print(
        f"seeded in {setup.seconds_seed:.1f} s: {counts['customers']:,} customers with {counts['contacts']:,} contacts"
        f" in the measured org, {counts['all_customers']:,} customers in all",
        flush=True,
    )
    return setup


@dataclass
class Meters:
    server: CpuMeter
    postgres: CpuMeter
    client: CpuMeter = field(default_factory=lambda: CpuMeter(os.getpid(), children=False))


# --- the HTTP load generator --------------------------------------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; just enough protocol for GETs with Content-Length answers."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"127.0.0.1:{port}", **headers}.items()).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        assert self.reader is not None
        assert self.writer is not None
        extra = b""
        if body is not None:
            extra = b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
        self.writer.write(f"{method} {path} HTTP/1.1\r\n".encode() + self.head + extra + b"\r\n" + (body or b""))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
        if match is None:
            raise RuntimeError(f"response without Content-Length: {head!r}")
        return status, await self.reader.readexactly(int(match.group(1)))


class AppFailure(Exception):
    pass


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # seconds
    seconds: float = 0.0
    errors: int = 0
    # CPU seconds used while measuring (None where it cannot be measured)
    server_cpu: float | None = None
    postgres_cpu: float | None = None
    client_cpu: float | None = None  # this process: the load generator (or the raw-SQL client)

    def add(self, other: "Stats") -> None:
        self.latencies.extend(other.latencies)
        self.errors += other.errors
        self.seconds += other.seconds
        self.server_cpu = _plus(self.server_cpu, other.server_cpu)
        self.postgres_cpu = _plus(self.postgres_cpu, other.postgres_cpu)
        self.client_cpu = _plus(self.client_cpu, other.client_cpu)

    @property
    def count(self) -> int:
        return len(self.latencies)

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def cpu_us(self, seconds: float | None) -> float | None:
        return seconds / self.count * 1e6 if seconds is not None and self.count else None


def _plus(a: float | None, b: float | None) -> float | None:
    return a + b if a is not None and b is not None else (a if b is None else b)


Op = Callable[[Any, int], Awaitable[None]]  # (connection, sequence number) → one timed operation


class CpuWindow:
    """CPU time of the server and PostgreSQL between `start` and `stop`."""

    def __init__(self, meters: Meters) -> None:
        self.meters = meters
        self.begin: list[float | None] = []

    def _now(self) -> list[float | None]:
        return [self.meters.server.seconds(), self.meters.postgres.seconds(), self.meters.client.seconds()]

    def start(self) -> None:
        self.begin = self._now()

    def stop(self, stats: Stats) -> None:
        used = [
            b - a if a is not None and b is not None else None for a, b in zip(self.begin, self._now(), strict=True)
        ]
        stats.server_cpu, stats.postgres_cpu, stats.client_cpu = used


async def timed_loop(connections: list[Any], op: Op, args: argparse.Namespace, meters: Meters) -> Stats:
    """Run `op` on every connection concurrently for `warmup` then `duration` seconds; time each call."""
    stats = Stats()
    window = CpuWindow(meters)
    counter = iter(range(10**12))
    start = time.perf_counter()
    measure_from = start + args.warmup
    end = measure_from + args.duration

    async def worker(conn: Any) -> None:
        while True:
            began = time.perf_counter()
            if began >= end:
                return
            try:
                await op(conn, next(counter))
            except AppFailure:
                stats.errors += 1
            if began >= measure_from:
                stats.latencies.append(time.perf_counter() - began)

    async def meter() -> None:
        await asyncio.sleep(args.warmup)
        window.start()

    await asyncio.gather(meter(), *(worker(conn) for conn in connections))
    window.stop(stats)
    stats.seconds = time.perf_counter() - measure_from
    return stats


# --- the scenarios --------------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    http: Stats | None
    sql: Stats | None
    note: str = ""


@dataclass
class Workload:
    ids: list[uuid.UUID]
    emails: list[str]
    terms: list[tuple[str, str]]  # (label, q)


@dataclass
class Bench:
    """What every scenario needs: the server, the database, the caller, the settings."""

    port: int
    bearer: str
    setup: Setup
    work: Workload
    args: argparse.Namespace
    http_meters: Meters  # server process tree and PostgreSQL, while HTTP is measured
    sql_meters: Meters  # PostgreSQL only, while raw SQL is measured

    async def run_http(self, op: Op, args: argparse.Namespace | None = None, bearer: str | None = None) -> Stats:
        connections = await http_connections(self.port, bearer or self.bearer, self.args.concurrency)
        try:
            return await timed_loop(connections, op, args or self.args, self.http_meters)
        finally:
            for conn in connections:
                await conn.close()

    async def run_sql(self, op: Op, args: argparse.Namespace | None = None) -> Stats:
        async with sql_pool(self.setup, self.args.concurrency) as connections:
            return await timed_loop(connections, op, args or self.args, self.sql_meters)

    async def principal(self, conn: asyncpg.Connection) -> None:
        """The statement with which auth finds the caller of every request (`auth.repository`)."""
        await conn.fetchrow(auth_repository.PRINCIPAL_FROM_USER, self.setup.user_id, self.setup.org_id)


async def pick_workload(setup: Setup) -> Workload:
    conn = await asyncpg.connect(setup.database_url)
    try:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM customer WHERE org_id = $1", setup.org_id)]
        emails = [
            r["email"]
            for r in await conn.fetch(
                "SELECT email::text FROM customer_contact WHERE org_id = $1 ORDER BY md5(id::text) LIMIT 5000",
                setup.org_id,
            )
        ]
    finally:
        await conn.close()
    rng = random.Random(4711)
    rng.shuffle(ids)
    erp_prefix = f"1{rng.randrange(setup.customers // 10):05d}"  # 10 customers share these 6 leading digits
    terms = [
        ("name fragment 'müller'", "müller"),
        ("accent-folded 'muller'", "muller"),
        ("'schröder'", "schröder"),
        ("folded 'gross' (Groß…)", "gross"),
        ("trade 'bäckerei'", "bäckerei"),
        (f"ERP prefix '{erp_prefix}'", erp_prefix),
    ]
    return Workload(ids=ids, emails=emails, terms=terms)


async def http_connections(port: int, bearer: str, n: int) -> list[HttpConnection]:
    connections = [HttpConnection(port, {"Authorization": f"Bearer {bearer}"}) for _ in range(n)]
    for conn in connections:
        await conn.open()
    return connections


async def login(port: int) -> str:
    conn = HttpConnection(port, {})
    await conn.open()
    try:
        body = json.dumps({"org_slug": "bench", "email": "ops@bench.example.com", "password": PASSWORD}).encode()
        status, answer = await conn.request("POST", "/api/v1/auth/login", body)
        if status != 200:
            raise RuntimeError(f"login failed: {status} {answer!r}")
        return str(json.loads(answer)["access_token"])
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def sql_pool(setup: Setup, n: int) -> AsyncIterator[list[asyncpg.Connection]]:
    connections = [await asyncpg.connect(setup.database_url) for _ in range(n)]
    try:
        yield connections
    finally:
        for conn in connections:
            await conn.close()


def customers_path(**params: Any) -> str:
    return "/api/v1/customers?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})


async def expect_ok(conn: HttpConnection, path: str) -> bytes:
    status, body = await conn.request("GET", path)
    if status != 200:
        raise AppFailure(f"GET {path}: {status} {body[:300]!r}")
    return body


FLOOR_NOTE = "FastAPI + uvicorn, one route, one dependency, the caller's and the customer's statements"


async def measure_get_one(bench: Bench) -> tuple[Row, Row, Row]:
    ids, org_id = bench.work.ids, bench.setup.org_id

    async def http_op(conn: HttpConnection, n: int) -> None:
        await expect_ok(conn, f"/api/v1/customers/{ids[n % len(ids)]}")

    async def sql_op(conn: asyncpg.Connection, n: int) -> None:
        await bench.principal(conn)
        await conn.fetchrow(customer_repository.GET_CUSTOMER, org_id, ids[n % len(ids)])

    jwt_row = Row("get one customer", await bench.run_http(http_op), await bench.run_sql(sql_op))
    token_row = Row("get one customer (API token)", await bench.run_http(http_op, bearer=bench.setup.api_token), None)
    port = common.free_port()
    command = [sys.executable, "-m", "uvicorn", "framework_floor:app", "--app-dir", str(Path(__file__).parent)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(bench.args.workers), "--log-level", "info"]
    env = {"DATABASE_URL": bench.setup.database_url, "CM_FLOOR_ORG_ID": str(org_id)}
    env["CM_FLOOR_USER_ID"] = str(bench.setup.user_id)
    with common.running_process(command, env, OUT_DIR / "framework-floor-server.log", bench.args.workers) as pid:
        floor = replace(bench, port=port, http_meters=replace(bench.http_meters, server=CpuMeter(pid)))
        floor_row = Row("  framework floor (framework_floor.py)", await floor.run_http(http_op), None, FLOOR_NOTE)
    return jwt_row, token_row, floor_row


async def list_floor(
    conn: asyncpg.Connection,
    org_id: OrgId,
    filters: CustomerFilter,
    *,
    limit: int = 50,
    after: tuple[str, uuid.UUID] | None = None,
) -> list[asyncpg.Record]:
    """The list statement as `customers.repository.fetch_customer_page` sends it."""
    sql, params = customer_repository.list_query(org_id, filters, limit=limit, after=after)
    if filters.search:
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            return list(await conn.fetch(sql, *params))
    return list(await conn.fetch(sql, *params))


async def measure_search(bench: Bench) -> tuple[list[Row], Stats, Stats]:
    rows: list[Row] = []
    all_http, all_sql = Stats(), Stats()
    org_id = OrgId(bench.setup.org_id)
    per_term = argparse.Namespace(**{**vars(bench.args), "duration": max(1.0, bench.args.duration / 2)})
    for label, term in bench.work.terms:
        path = customers_path(q=term)
        probe = (await http_connections(bench.port, bench.bearer, 1))[0]
        found = json.loads(await expect_ok(probe, path))
        await probe.close()

        async def http_op(conn: HttpConnection, n: int, path: str = path) -> None:
            await expect_ok(conn, path)

        async def sql_op(conn: asyncpg.Connection, n: int, term: str = term) -> None:
            await bench.principal(conn)
            await list_floor(conn, org_id, CustomerFilter(q=term))

        http = await bench.run_http(http_op, per_term)
        floor = await bench.run_sql(sql_op, per_term)
        more = "+" if found["next_cursor"] else ""
        rows.append(Row(f"  q: {label}", http, floor, f"{len(found['items'])}{more} hits on page 1"))
        all_http.add(http)
        all_sql.add(floor)
    return rows, all_http, all_sql


async def measure_email(bench: Bench) -> Row:
    emails, org_id = bench.work.emails, OrgId(bench.setup.org_id)

    async def http_op(conn: HttpConnection, n: int) -> None:
        body = await expect_ok(conn, customers_path(email=emails[n % len(emails)]))
        if b'"items":[]' in body:
            raise AppFailure("the e-mail filter found nothing")

    async def sql_op(conn: asyncpg.Connection, n: int) -> None:
        await bench.principal(conn)
        await list_floor(conn, org_id, CustomerFilter(email=emails[n % len(emails)]))

    return Row("email= filter", await bench.run_http(http_op), await bench.run_sql(sql_op))


NEXT_CURSOR = re.compile(rb'"next_cursor":(?:"([^"]*)"|null)\}$')


async def measure_walk(bench: Bench) -> tuple[Row, str]:
    """Every client walks all pages (limit=200) from the first to the last; each page is one timed request."""
    setup, org_id = bench.setup, OrgId(bench.setup.org_id)
    connections = await http_connections(bench.port, bench.bearer, bench.args.concurrency)
    http = Stats()
    first_walk: list[bytes] = []

    async def walk(conn: HttpConnection, keep: bool) -> None:
        cursor: str | None = None
        while True:
            began = time.perf_counter()
            body = await expect_ok(conn, customers_path(limit=200, cursor=cursor))
            http.latencies.append(time.perf_counter() - began)
            if keep:
                first_walk.append(body)
            match = NEXT_CURSOR.search(body)
            if match is None or match.group(1) is None:
                return
            cursor = match.group(1).decode()

    window = CpuWindow(bench.http_meters)
    window.start()
    started = time.perf_counter()
    await asyncio.gather(*(walk(conn, i == 0) for i, conn in enumerate(connections)))
    http.seconds = time.perf_counter() - started
    window.stop(http)
    for conn in connections:
        await conn.close()
    ids = [item["id"] for body in first_walk for item in json.loads(body)["items"]]
    walk_seconds = sum(http.latencies[: len(first_walk)])
    check = (
        f"one walk: {len(first_walk)} pages, {len(ids):,} rows, {len(set(ids)):,} distinct"
        f" ({'each customer once' if len(ids) == len(set(ids)) == setup.customers else 'MISMATCH'})"
    )

    floor = Stats()
    async with sql_pool(setup, bench.args.concurrency) as sql_connections:

        async def sql_walk(conn: asyncpg.Connection) -> None:
            after: tuple[str, uuid.UUID] | None = None
            while True:
                began = time.perf_counter()
                await bench.principal(conn)
                rows = await list_floor(conn, org_id, CustomerFilter(), limit=200, after=after)
                floor.latencies.append(time.perf_counter() - began)
                if len(rows) <= 200:
                    return
                after = (rows[199]["sort_name"], rows[199]["id"])

        window = CpuWindow(bench.sql_meters)
        window.start()
        started = time.perf_counter()
        await asyncio.gather(*(sql_walk(conn) for conn in sql_connections))
        floor.seconds = time.perf_counter() - started
        window.stop(floor)
    note = f"a full walk {walk_seconds:.2f} s"
    return Row("page walk, limit=200 (per page)", http, floor, note), check


# --- report ---------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


HEADER = [
    "scenario",
    "HTTP p50 ms",
    "HTTP p95 ms",
    "HTTP req/s",
    "server CPU µs/req",
    "PG CPU µs/req",
    "SQL p50 ms",
    "SQL p95 ms",
    "SQL q/s",
    "note",
]


def cells(row: Row) -> list[str]:
    h, s = row.http, row.sql
    return [
        row.label,
        fmt(h.pct(50), 2) if h else "",
        fmt(h.pct(95), 2) if h else "",
        fmt(h.rate, 0) if h else "",
        fmt(h.cpu_us(h.server_cpu), 0) if h else "",
        fmt(h.cpu_us(h.postgres_cpu), 0) if h else "",
        fmt(s.pct(50), 2) if s else "",
        fmt(s.pct(95), 2) if s else "",
        fmt(s.rate, 0) if s else "",
        row.note + (f" ({h.errors} errors)" if h and h.errors else ""),
    ]


def print_table(rows: list[Row], title: str) -> None:
    lines = [cells(row) for row in rows]
    widths = [max(len(r[i]) for r in [HEADER, *lines]) for i in range(len(HEADER))]
    print()
    print(title)
    print("| " + " | ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        padded = [c.ljust(w) if i in (0, 9) else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        print("| " + " | ".join(padded) + " |")


LOAD_AVERAGES: list[float] = []  # sampled after each scenario: how busy the machine was


def show(rows: list[Row], row: Row) -> None:
    """Keep the row for the table and print it at once (a long run shows its progress)."""
    LOAD_AVERAGES.append(os.getloadavg()[0])
    rows.append(row)
    print("  " + " | ".join(c for c in cells(row) if c).strip(), flush=True)


async def benchmark(args: argparse.Namespace) -> None:
    OUT_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cm-bench-"))
    setup = await prepare_database(args, workdir)
    try:
        work = await pick_workload(setup)
        with running_server(setup.database_url, OUT_DIR / "api-server.log", workdir, args.workers) as (
            port,
            server_pid,
        ):
            postgres = CpuMeter(setup.postmaster_pid)
            bench = Bench(
                port=port,
                bearer=await login(port),
                setup=setup,
                work=work,
                args=args,
                http_meters=Meters(CpuMeter(server_pid), postgres),
                sql_meters=Meters(CpuMeter(None), postgres),
            )
            print(f"measuring: {args.concurrency} concurrent clients, {args.duration:g} s per scenario", flush=True)
            rows: list[Row] = []
            jwt_row, token_row, floor_row = await measure_get_one(bench)
            for row in (jwt_row, token_row, floor_row):
                show(rows, row)
            term_rows, all_http, all_sql = await measure_search(bench)
            show(rows, Row("search q= (all terms below)", all_http, all_sql))
            for row in term_rows:
                show(rows, row)
            show(rows, await measure_email(bench))
            walk_row, check = await measure_walk(bench)
            show(rows, walk_row)
        title = (
            f"API benchmark — {setup.customers:,} customers in the measured org + {setup.noise:,} in"
            f" {args.noise_orgs} other orgs; PostgreSQL {setup.pg_version}; {os.cpu_count()} CPUs"
            f" (1-minute load average {min(LOAD_AVERAGES):.1f}–{max(LOAD_AVERAGES):.1f} while measuring);"
            f" Python {platform.python_version()};"
            f" `customer-master serve --workers {args.workers}`; {args.concurrency} concurrent keep-alive clients;"
            " JWT login token unless noted. SQL = the statements the service sends for that request"
            " (caller lookup + query), prepared, on as many asyncpg connections."
        )
        print_table(rows, title)
        print(check)
        get_one, floor = jwt_row.http, floor_row.http
        assert get_one is not None
        verdicts = [
            f"get-one p95 {get_one.pct(95):.2f} ms (target < 5): {'met' if get_one.pct(95) < 5 else 'MISSED'}",
            f"get-one {get_one.rate:,.0f} req/s (target ≥ 1,000): {'met' if get_one.rate >= 1000 else 'MISSED'}",
            f"search p95 {all_http.pct(95):.2f} ms (target < 15): {'met' if all_http.pct(95) < 15 else 'MISSED'}",
        ]
        print("targets: " + "; ".join(verdicts))
        parts = [get_one.cpu_us(get_one.server_cpu), get_one.cpu_us(get_one.postgres_cpu)]
        parts.append(get_one.cpu_us(get_one.client_cpu))
        floor_us, product_us = floor and floor.cpu_us(floor.server_cpu), parts[0]
        if floor_us and product_us:
            print(
                f"get-one server CPU per request: product {product_us:,.0f} µs, framework floor {floor_us:,.0f} µs"
                f" ({product_us / floor_us:.2f}× the floor)"
            )
        if all(part is not None for part in parts):
            server_us, postgres_us, client_us = (part or 0.0 for part in parts)
            total = server_us + postgres_us + client_us
            print(
                f"get-one CPU per request: server {server_us:,.0f} µs + PostgreSQL {postgres_us:,.0f} µs"
                f" + load generator {client_us:,.0f} µs = {total:,.0f} µs: {os.cpu_count()} CPUs doing nothing"
                f" else would serve at most {(os.cpu_count() or 1) * 1e6 / total:,.0f} req/s"
                f" ({(os.cpu_count() or 1) * 1e6 / (server_us + postgres_us):,.0f} without the load generator)"
            )
    finally:
        if args.keep:
            print(f"kept database {setup.database_url}")
        else:
            await drop_database(setup.admin_url, setup.database_name)
        if not os.environ.get("DATABASE_URL"):
            await asyncio.to_thread(stop_embedded_server, workdir)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000, help="customers in the measured org")
    parser.add_argument("--noise", type=int, default=50_000, help="customers in the other orgs, in all")
    parser.add_argument("--noise-orgs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent keep-alive clients")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per scenario")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds run unmeasured before each scenario")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="`customer-master serve --workers` (default: CPUs)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database (and the embedded data directory)")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(benchmark(args))
    else:
        uvloop.run(benchmark(args))


if __name__ == "__main__":
    main()
