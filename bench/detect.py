"""Detection benchmark: `POST /api/v1/customers/detect` at 1,000,000 contacts over real HTTP.

What it does, in one run:

1. A fresh database: on the embedded PostgreSQL (a throw-away data directory), or on the server of
   `DATABASE_URL` when it is set (a new database `cm_bench_detect_…` there, dropped afterwards), migrated
   by the same code as `customer-master migrate`.
2. Seeds set-based (generate_series, a few statements): the measured org with 300,000 customers and
   1,000,000 contacts — German company names with umlauts and legal forms, ERP numbers (`1000042`,
   `K-300`), a mail domain per customer, some customers on public mail providers (gmx.de, web.de, …)
   and some groups of 20 customers sharing one domain — and three noise orgs of 50,000 customers each,
   built by the same generator (the same names, domains and ERP numbers: the tenant filter must skip
   them). Then VACUUM ANALYZE.
3. Starts the real server as a user would (`customer-master serve` in its own process, with
   `DATABASE_URL` and `CM_JWT_SECRET`) and measures, one request after another on a keep-alive
   connection with an API token, the latency (p50/p95) of detection
   - by sender e-mail (`"Name" <Address>` of an existing contact, mixed case),
   - by sender domain (an unknown address on a customer's domain),
   - by customer number in a two-page order text (letterhead, addresses, 60 order lines, `Kundennr.: …`;
     its first 10 lines are compared as company names too, as the contract says),
   - by fuzzy company name (`customer_hint.name`: a typo, another legal form, other case).
4. Beside each figure, in the same run and on the same data: the service function called in-process
   (no HTTP, no auth: the detection itself, its settings read included), and the raw SQL lookup that answers
   the question with nothing else (prepared statements on one asyncpg connection) — the floor. For the
   company name (S5) the SQL is the trigram search through a GIN index on `name_key` (created here for it;
   the product compares names in memory, `detection/name_index.py`): the SQL alternative, not a floor.
5. The cost of the in-memory names: loading the measured org (a process's first detection of it, or the
   first after a large import), the server's RSS, and S5 per header line in memory beside SQL.

    .venv/bin/python bench/detect.py                        # 300k customers / 1M contacts, 1,000 requests each
    .venv/bin/python bench/detect.py --customers 30000 --contacts 100000 --requests 200
"""

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import random
import secrets
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from common import LEGAL_FORMS, STREETS, SURNAMES, TRADES, release_bench_database, running_server
from customer_master.auth import service as auth_service
from customer_master.auth.models import Role
from customer_master.auth.schemas import ApiTokenCreate
from customer_master.auth.tenancy import OrgId
from customer_master.db.embedded import ensure_database, start_embedded_server
from customer_master.db.migrate import upgrade_to_head
from customer_master.db.session import Database
from customer_master.detection import name_index, service, signals
from customer_master.detection.schemas import DetectRequest

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"

# --- seed data ----------------------------------------------------------------------------------

# Made-up surnames from syllables, so that 300,000 names are as varied as a real customer base.
SYLLABLES = [
    "Ber", "Hol", "Kam", "Lin", "Mar", "Ost", "Ran", "Sel", "Tan", "Wal", "Zim", "Eck", "Fal", "Grö", "Hag",
    "Jan", "Kor", "Lau", "Mol", "Nie", "Pet", "Reh", "Sto", "Thi", "Ulm", "Vos", "Wie", "Bran", "Dre", "Frü",
]  # fmt: skip
ENDINGS = [
    "mann", "berg", "feld", "hoff", "ner", "ler", "inger", "hauser", "brink", "kamp",
    "wald", "meier", "stedt", "horst", "bach", "rich", "ke", "sen", "dorf", "thal",
]  # fmt: skip
CITIES = [
    "München", "Köln", "Düsseldorf", "Nürnberg", "Würzburg", "Lübeck", "Göttingen", "Osnabrück", "Saarbrücken",
    "Mönchengladbach", "Tübingen", "Berlin", "Hamburg", "Frankfurt", "Stuttgart", "Leipzig", "Dresden", "Fürth",
    "Zürich", "Wien", "Graz", "Innsbruck", "Linz", "Bremen",
]  # fmt: skip
FIRST_NAMES = [
    "Jürgen", "Jörg", "Björn", "Sören", "Günter", "Käthe", "Hans-Jürgen", "Uwe", "Anna", "Lena", "Jonas", "Lukas",
    "Sabine", "Stefan", "Thomas", "Andrea", "Michael", "Birgit", "Ömer", "Zoë", "René", "Frauke", "Dörte", "Max",
]  # fmt: skip
# The org itself, as every order's address block names it. Its name shares no long word with the
# customers' names: a recipient called "… Großhandel GmbH" would make every text-only request also rank
# the ~8,000 customers whose name has "Großhandel" in it (see RESULTS.md).
RECIPIENT = ("Nordlicht Handelskontor GmbH", "Lagerstraße 5", "12345 Musterstadt")
PUBLIC_DOMAINS = ["gmx.de", "web.de", "t-online.de", "gmail.com", "gmx.at", "bluewin.ch"]

SLUG_FUNCTION = """
CREATE OR REPLACE FUNCTION pg_temp.cm_bench_slug(text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT trim(both '-' from regexp_replace(
    replace(replace(replace(replace(lower($1), 'ä', 'ae'), 'ö', 'oe'), 'ü', 'ue'), 'ß', 'ss'),
    '[^a-z0-9]+', '-', 'g'))
$$
"""

# One row per customer: its name parts, ERP number and mail domain. 1 in 20 customers writes from a
# public mail provider; customers 1000k+0 … 1000k+19 share one group domain.
SEED_TABLE_SQL = """
CREATE TEMP TABLE seed AS
SELECT i, gen_random_uuid() AS id, name, erp, first_name, surname,
       CASE WHEN i % 20 = 7 THEN ($6::text[])[1 + abs(hashint4(i * 29)) % cardinality($6::text[])]
            WHEN i % 1000 < 20 THEN 'gruppe-' || (i / 1000) || '.de'
            ELSE pg_temp.cm_bench_slug(surname) || '-' || pg_temp.cm_bench_slug(trade) || '-' || i || '.de'
       END AS domain,
       i % 20 = 7 AS public_mail
  FROM (
    SELECT i, trade, first_name, surname,
           CASE i % 5
             WHEN 0 THEN surname || ' ' || trade || ' ' || legal_form
             WHEN 1 THEN trade || ' ' || surname || ' & ' || surname2 || ' ' || legal_form
             WHEN 2 THEN surname || ' ' || trade || ' ' || city || ' ' || legal_form
             WHEN 3 THEN first_name || ' ' || surname || ' ' || trade || ' ' || legal_form
             ELSE surname || ' & ' || surname2 || ' ' || legal_form
           END AS name,
           CASE WHEN i % 3 = 0 THEN 'K-' || i ELSE (1000000 + i)::text END AS erp
      FROM (
        SELECT i,
               ($2::text[])[1 + abs(hashint4(i * 3 + 1)) % cardinality($2::text[])] AS surname,
               ($2::text[])[1 + abs(hashint4(i * 5 + 2)) % cardinality($2::text[])] AS surname2,
               ($3::text[])[1 + abs(hashint4(i * 7 + 3)) % cardinality($3::text[])] AS trade,
               ($4::text[])[1 + abs(hashint4(i * 11 + 4)) % cardinality($4::text[])] AS city,
               ($5::text[])[1 + abs(hashint4(i * 13 + 5)) % cardinality($5::text[])] AS legal_form,
               ($7::text[])[1 + abs(hashint4(i * 17 + 6)) % cardinality($7::text[])] AS first_name
          FROM generate_series(1, $1::int) AS i
      ) AS picks
  ) AS named
"""

SEED_CUSTOMERS_SQL = """
INSERT INTO customer (id, org_id, name, erp_customer_number, default_currency, default_language)
SELECT id, $1::uuid, name, erp, 'EUR', 'de-DE' FROM seed
"""

# Contact j belongs to customer ((j − 1) mod N) + 1: every customer has ⌊contacts / N⌋ or one more.
SEED_CONTACTS_SQL = """
INSERT INTO customer_contact (org_id, customer_id, email, name, is_primary)
SELECT $1::uuid, s.id,
       CASE WHEN s.public_mail THEN pg_temp.cm_bench_slug(s.first_name) || '.' || pg_temp.cm_bench_slug(s.surname)
                                    || '.' || s.i || '.' || c.n
            ELSE (ARRAY['einkauf', 'bestellung', 'lager', 'buchhaltung', 'info', 'verkauf'])[1 + (c.n - 1) % 6]
                 || CASE WHEN c.n > 6 THEN c.n::text ELSE '' END
       END || '@' || s.domain,
       CASE c.n WHEN 1 THEN s.first_name || ' ' || s.surname END,
       c.n = 1
  FROM (SELECT j, ((j - 1) % $2::int) + 1 AS i, ((j - 1) / $2::int) + 1 AS n
          FROM generate_series(1, $3::int) AS j) AS c
  JOIN seed s ON s.i = c.i
"""


def surnames() -> list[str]:
    return SURNAMES + [a + b for a in SYLLABLES for b in ENDINGS]


async def seed_org(conn: asyncpg.Connection, org_id: uuid.UUID, customers: int, contacts: int) -> None:
    """`customers` customers with `contacts` contacts in one org, in one transaction."""
    async with conn.transaction():
        await conn.execute(SLUG_FUNCTION)
        await conn.execute("DROP TABLE IF EXISTS seed")
        await conn.execute(
            SEED_TABLE_SQL, customers, surnames(), TRADES, CITIES, LEGAL_FORMS, PUBLIC_DOMAINS, FIRST_NAMES
        )
        await conn.execute("CREATE INDEX ON seed (i)")
        await conn.execute("ANALYZE seed")
        await conn.execute(SEED_CUSTOMERS_SQL, org_id)
        await conn.execute(SEED_CONTACTS_SQL, org_id, customers, contacts)


# --- the database and the server ----------------------------------------------------------------


@dataclass
class Setup:
    database_url: str
    admin_url: str
    database_name: str
    org_id: uuid.UUID
    token: str
    pg_version: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    seconds_seed: float = 0.0


async def create_org(database_url: str) -> tuple[uuid.UUID, str]:
    """The measured org and a VIEWER API token (detection is read-only), through the service code."""
    database = Database(database_url, pool_size=1)
    try:
        async with database.transaction() as session:
            org = await auth_service.create_org(session, "bench", RECIPIENT[0])
            _, token = await auth_service.create_api_token(
                session, OrgId(org.id), ApiTokenCreate(name="bench", role=Role.VIEWER)
            )
        return org.id, token
    finally:
        await database.dispose()


async def prepare_database(args: argparse.Namespace, workdir: Path) -> Setup:
    name = f"cm_bench_detect_{secrets.token_hex(3)}"
    if os.environ.get("DATABASE_URL"):
        admin_url = os.environ["DATABASE_URL"]
    else:
        print(f"starting embedded PostgreSQL in {workdir}", flush=True)
        admin_url = await asyncio.to_thread(start_embedded_server, workdir)
    url = await ensure_database(admin_url, name)
    await asyncio.to_thread(upgrade_to_head, url)
    org_id, token = await create_org(url)
    setup = Setup(url, admin_url, name, org_id, token)
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        setup.pg_version = await conn.fetchval("SHOW server_version")
        await conn.execute("SET synchronous_commit = off; SET maintenance_work_mem = '512MB'; SET work_mem = '256MB'")
        print(f"seeding {args.customers:,} customers with {args.contacts:,} contacts in the measured org …", flush=True)
        await seed_org(conn, org_id, args.customers, args.contacts)
        for n in range(args.noise_orgs):
            noise_org = await conn.fetchval(
                "INSERT INTO org (slug, name) VALUES ($1, $2) RETURNING id", f"noise-{n}", f"Noise {n}"
            )
            print(f"seeding noise org {n + 1}/{args.noise_orgs} …", flush=True)
            await seed_org(conn, noise_org, args.noise_customers, args.noise_customers * 3)
        # Only for the raw-SQL comparison of S5 (the product searches names in memory and has no such index).
        print("trigram index for the raw-SQL name search …", flush=True)
        await conn.execute(f"CREATE INDEX {RAW_NAME_INDEX} ON customer USING gin (org_id, name_key gin_trgm_ops)")
        print("VACUUM ANALYZE …", flush=True)
        await conn.execute("VACUUM ANALYZE")
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM customer WHERE org_id = $1) AS customers,"
            " (SELECT count(*) FROM customer_contact WHERE org_id = $1) AS contacts,"
            " (SELECT count(*) FROM customer) AS all_customers,"
            " (SELECT count(*) FROM customer_contact) AS all_contacts",
            org_id,
        )
        setup.counts = dict(row)
    finally:
        await conn.close()
    setup.seconds_seed = time.perf_counter() - started
    c = setup.counts
    print(
        f"seeded in {setup.seconds_seed:.0f} s: {c['customers']:,} customers / {c['contacts']:,} contacts in the"
        f" measured org; {c['all_customers']:,} / {c['all_contacts']:,} in all orgs",
        flush=True,
    )
    return setup


# --- CPU time: steadier than latency on a machine that others share -----------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def postgres_cpu(workdir: Path) -> dict[int, float] | None:
    """CPU time of the embedded server's postmaster and each of its children (the backends), by pid;
    None with DATABASE_URL (a server elsewhere)."""
    pid_file = workdir / "pgdata" / "postmaster.pid"
    if not pid_file.exists():
        return None
    postmaster = int(pid_file.read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
    return {pid: cpu_seconds(pid) for pid in pids}


def postgres_cpu_since(workdir: Path, before: dict[int, float] | None) -> float:
    """PostgreSQL CPU seconds since `before`, backends started meanwhile included."""
    after = postgres_cpu(workdir)
    if before is None or after is None:
        return float("nan")
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# --- the workload -------------------------------------------------------------------------------


@dataclass
class Sample:
    """One customer of the measured org, and what an order from it looks like."""

    id: uuid.UUID
    name: str
    erp: str
    email: str
    domain: str
    public_mail: bool
    contact_name: str | None


@dataclass
class Case:
    body: dict[str, Any]
    expected: uuid.UUID
    email: str | None = None
    domain: str | None = None
    numbers: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


async def pick_samples(setup: Setup, count: int) -> list[Sample]:
    conn = await asyncpg.connect(setup.database_url)
    try:
        rows = await conn.fetch(
            """SELECT c.id, c.name, c.erp_customer_number AS erp, p.email::text AS email, p.name AS contact_name
                 FROM customer c
                 JOIN customer_contact p ON p.org_id = c.org_id AND p.customer_id = c.id AND p.is_primary
                WHERE c.org_id = $1
                ORDER BY md5(c.id::text)
                LIMIT $2""",
            setup.org_id,
            count,
        )
    finally:
        await conn.close()
    return [
        Sample(
            r["id"],
            r["name"],
            r["erp"],
            r["email"],
            signals.email_domain(r["email"]),
            signals.is_public_domain(signals.email_domain(r["email"])),
            r["contact_name"],
        )
        for r in rows
    ]


def mixed_case(email: str, rng: random.Random) -> str:
    local, _, domain = email.partition("@")
    return local.capitalize() + "@" + (domain.upper() if rng.random() < 0.5 else domain.capitalize())


def fuzzy(name: str, rng: random.Random) -> str:
    """How a name arrives in an order: another legal form, a typo, other case."""
    words = name.split()
    for form in sorted(LEGAL_FORMS, key=len, reverse=True):
        if name.endswith(" " + form):
            words = name[: -len(form) - 1].split()
            break
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if candidates:
        i = rng.choice(candidates)
        w, k = words[i], rng.randrange(1, len(words[i]) - 2)
        words[i] = w[:k] + w[k + 1] + w[k] + w[k + 2 :]  # two letters swapped
    words.append(rng.choice(["AG", "GmbH", "KG", "Gmbh & Co KG", ""]))
    fuzzed = " ".join(w for w in words if w)
    return fuzzed.upper() if rng.random() < 0.2 else fuzzed


ARTICLES = [
    "Schrauben M8x40 verzinkt", "Dübel 8 mm", "Kabelbinder 200 mm schwarz", "Winkel 90° Edelstahl",
    "Holzleim D3 750 g", "Silikon transparent 310 ml", "Schleifpapier K120", "Bohrer HSS 6 mm",
    "Montageschaum 750 ml", "Arbeitshandschuhe Gr. 10", "Gewindestange M10 1 m", "Unterlegscheiben M8",
]  # fmt: skip


def order_text(sample: Sample, rng: random.Random) -> str:
    """A two-page order (about 6,000 characters): letterhead, addresses, 60 lines, the customer number."""
    street = f"{rng.choice(STREETS)} {rng.randrange(1, 120)}"
    city = f"{rng.randrange(10000, 99999)} {rng.choice(CITIES)}"
    head = [
        sample.name,
        street,
        city,
        f"Tel. +49 {rng.randrange(30, 999)} {rng.randrange(100000, 9999999)} · E-Mail: {sample.email}",
        "",
        *RECIPIENT,
        "",
        f"Bestellung Nr. {rng.randrange(2026000, 2026999)}",
        f"Datum: {rng.randrange(1, 28):02d}.11.2026",
        f"Kundennr.: {sample.erp}",
        f"Ihr Ansprechpartner: {sample.contact_name or 'Einkauf'}",
        "",
        "Sehr geehrte Damen und Herren,",
        "hiermit bestellen wir zu den vereinbarten Konditionen folgende Artikel:",
        "",
        "Pos.  Art.-Nr.     Bezeichnung                          Menge   Einheit   Einzelpreis",
    ]
    lines = [
        f"{n:>4}  {rng.randrange(100000, 999999)}       {rng.choice(ARTICLES):<36} {rng.randrange(1, 500):>5}"
        f"   Stk.      {rng.randrange(1, 9999) / 100:>8.2f} EUR"
        for n in range(1, 61)
    ]
    foot = [
        "",
        "Lieferanschrift wie oben. Bitte liefern Sie bis spätestens KW 50 frei Haus.",
        "Zahlung: 30 Tage netto. Bitte geben Sie bei Rückfragen unsere Kundennummer an.",
        "",
        "Mit freundlichen Grüßen",
        sample.contact_name or "Einkauf",
        sample.name,
    ]
    return "\n".join(head + lines + foot) + "\n"


def build_cases(samples: list[Sample], rng: random.Random) -> dict[str, list[Case]]:
    corporate = [s for s in samples if not s.public_mail]
    cases: dict[str, list[Case]] = {"e-mail": [], "domain": [], "number (2-page text)": [], "fuzzy name": []}
    for s in samples:
        sender = f'"{s.contact_name or "Einkauf"}" <{mixed_case(s.email, rng)}>'
        cases["e-mail"].append(
            Case({"from_email": sender}, s.id, email=s.email, domain=None if s.public_mail else s.domain)
        )
        text = order_text(s, rng)
        cases["number (2-page text)"].append(
            Case({"document_text": text}, s.id, numbers=[s.erp], names=signals.header_lines(text))
        )
        hint = fuzzy(s.name, rng)
        cases["fuzzy name"].append(Case({"customer_hint": {"name": hint}}, s.id, names=[hint]))
    for s in corporate:
        unknown = f"neu.kontakt{rng.randrange(1000)}@{s.domain}"
        cases["domain"].append(Case({"from_email": unknown}, s.id, email=unknown, domain=s.domain))
    return cases


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # seconds

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000

    @property
    def mean(self) -> float:
        return statistics.fmean(self.latencies) * 1000


@dataclass
class Quality:
    top1: int = 0
    listed: int = 0
    auto_selected: int = 0
    total: int = 0

    def add(self, expected: uuid.UUID, answer: dict[str, Any]) -> None:
        ids = [c["customer_id"] for c in answer["candidates"]]
        self.total += 1
        self.top1 += bool(ids) and ids[0] == str(expected)
        self.listed += str(expected) in ids
        self.auto_selected += answer["selected_customer_id"] == str(expected)

    def __str__(self) -> str:
        def share(n: int) -> str:
            return f"{100 * n / max(1, self.total):.0f} %"

        return f"top-1 {share(self.top1)}, listed {share(self.listed)}, auto-selected {share(self.auto_selected)}"


def measure_http(port: int, token: str, cases: list[Case], requests: int, warmup: int) -> tuple[Stats, Quality]:
    """One keep-alive connection, one request after another: latency, not throughput."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    bodies = [json.dumps(case.body).encode() for case in cases]
    stats, quality = Stats(), Quality()
    try:
        for n in range(warmup + requests):
            case_index = n % len(cases)
            began = time.perf_counter()
            conn.request("POST", "/api/v1/customers/detect", bodies[case_index], headers)
            response = conn.getresponse()
            body = response.read()
            finished = time.perf_counter()
            if response.status != 200:
                raise RuntimeError(f"detect answered {response.status}: {body[:300]!r}")
            if n >= warmup:
                stats.latencies.append(finished - began)
                quality.add(cases[case_index].expected, json.loads(body))
    finally:
        conn.close()
    return stats, quality


async def measure_service(setup: Setup, cases: list[Case], requests: int, warmup: int) -> Stats:
    """The service function in-process: the detection's own cost, without HTTP and auth."""
    database = Database(setup.database_url, pool_size=1)
    stats = Stats()
    try:
        requests_of = [DetectRequest.model_validate(case.body) for case in cases]
        for n in range(warmup + requests):
            began = time.perf_counter()
            async with database.transaction() as session:
                await service.detect_customer(session, OrgId(setup.org_id), requests_of[n % len(cases)])
            if n >= warmup:
                stats.latencies.append(time.perf_counter() - began)
    finally:
        await database.dispose()
    return stats


# The lookups that answer each question and nothing else (no settings, no ranking, no JSON).
RAW_EMAIL = "SELECT DISTINCT customer_id FROM customer_contact WHERE org_id = $1 AND email = $2::citext"
RAW_DOMAIN = (
    "SELECT DISTINCT customer_id FROM customer_contact"
    " WHERE org_id = $1 AND lower(split_part(email::text, '@', 2)) = $2"
)
RAW_NUMBER = "SELECT id FROM customer WHERE org_id = $1 AND erp_customer_number = ANY ($2::text[])"
RAW_NAME_INDEX = "bench_customer_org_name_key_trgm"
# S5 in SQL, as the product did it before its in-memory index: the trigram GIN index pre-filters at 30 %.
RAW_NAME = """
WITH k AS MATERIALIZED (SELECT cm_company_key($2) AS key)
SELECT c.id, similarity(c.name_key, k.key) AS sim
  FROM k JOIN customer c ON c.org_id = $1 AND c.name_key % k.key
 ORDER BY sim DESC
 LIMIT 5"""


async def measure_raw(setup: Setup, label: str, cases: list[Case], requests: int, warmup: int) -> Stats:
    """The floor: prepared statements on one connection; the 2-page text also pays its 10 name lookups."""
    conn = await asyncpg.connect(setup.database_url)
    stats = Stats()
    try:
        await conn.execute("SET pg_trgm.similarity_threshold = 0.3")
        email, domain = await conn.prepare(RAW_EMAIL), await conn.prepare(RAW_DOMAIN)
        number, name = await conn.prepare(RAW_NUMBER), await conn.prepare(RAW_NAME)

        async def lookup(case: Case) -> None:
            if label == "e-mail":
                await email.fetch(setup.org_id, case.email)
            elif label == "domain":
                await domain.fetch(setup.org_id, case.domain)
            elif label.startswith("number"):
                await number.fetch(setup.org_id, case.numbers)
                for line in case.names:
                    await name.fetch(setup.org_id, line)
            else:
                await name.fetch(setup.org_id, case.names[0])

        for n in range(warmup + requests):
            began = time.perf_counter()
            await lookup(cases[n % len(cases)])
            if n >= warmup:
                stats.latencies.append(time.perf_counter() - began)
    finally:
        await conn.close()
    return stats


async def measure_raw_number_only(setup: Setup, cases: list[Case], requests: int, warmup: int) -> Stats:
    """The number lookup alone (the text's customer number found by the regex, then the index)."""
    conn = await asyncpg.connect(setup.database_url)
    stats = Stats()
    try:
        number = await conn.prepare(RAW_NUMBER)
        for n in range(warmup + requests):
            case = cases[n % len(cases)]
            began = time.perf_counter()
            await number.fetch(setup.org_id, signals.customer_numbers(case.body["document_text"]))
            if n >= warmup:
                stats.latencies.append(time.perf_counter() - began)
    finally:
        await conn.close()
    return stats


async def measure_lines(setup: Setup, cases: list[Case], rounds: int) -> list[tuple[str, Stats, Stats]]:
    """Where the 2-page text's time goes: S5 for each header line, by the line's position — in memory (the
    product's `name_index`) and, beside it, as one trigram search in SQL."""
    conn = await asyncpg.connect(setup.database_url)
    per_line: list[tuple[str, Stats, Stats]] = []
    try:
        names = await name_index.NameIndexes().current(conn, OrgId(setup.org_id), None, 0)
        await conn.execute("SET pg_trgm.similarity_threshold = 0.3")
        name = await conn.prepare(RAW_NAME)
        for position in range(signals.S5_HEADER_LINES):
            in_memory, sql = Stats(), Stats()
            for n in range(rounds):
                line = cases[n % len(cases)].names[position]
                trigrams = await conn.fetchval("SELECT show_trgm(cm_company_key($1))", line)
                began = time.perf_counter()
                names.most_similar(trigrams)
                in_memory.latencies.append(time.perf_counter() - began)
                began = time.perf_counter()
                await name.fetch(setup.org_id, line)
                sql.latencies.append(time.perf_counter() - began)
            per_line.append((cases[0].names[position], in_memory, sql))
    finally:
        await conn.close()
    return per_line


async def measure_index_load(setup: Setup, rounds: int = 3) -> tuple[Stats, int]:
    """Loading the measured org's names into memory (a process's first detection of the org, or the first
    after a large import), and the number of names loaded."""
    conn = await asyncpg.connect(setup.database_url)
    stats = Stats()
    try:
        for _ in range(rounds):
            began = time.perf_counter()
            names = await name_index.NameIndexes().current(conn, OrgId(setup.org_id), None, 0)
            stats.latencies.append(time.perf_counter() - began)
    finally:
        await conn.close()
    return stats, names.size


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


TARGETS = {"e-mail": 10.0, "domain": 10.0, "number (2-page text)": 10.0, "fuzzy name": 50.0}


def fmt(stats: Stats) -> str:
    return f"{stats.pct(50):6.2f} / {stats.pct(95):6.2f}"


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cm-bench-detect-"))
    setup = await prepare_database(args, workdir)
    results: list[dict[str, Any]] = []
    try:
        rng = random.Random(4711)
        samples = await pick_samples(setup, args.samples)
        cases = build_cases(samples, rng)
        OUT_DIR.mkdir(exist_ok=True)
        print(
            f"\n{args.requests:,} requests per scenario ({args.slow_requests:,} for text and fuzzy name) after"
            f" {args.warmup} warm-up, one at a time; ms p50 / p95\n",
            flush=True,
        )
        header = (
            f"{'detection by':<22} {'HTTP':>15}  {'service':>15}  {'raw SQL':>15}  target p95  "
            "CPU ms/req server + PG  load  answers (HTTP)"
        )
        print(header)
        print("-" * len(header), flush=True)
        with running_server(setup.database_url, OUT_DIR / "detect-server.log", workdir) as (port, server_pid):
            for label, scenario in cases.items():
                requests = (
                    args.requests if TARGETS[label] <= 10 and not label.startswith("number") else args.slow_requests
                )
                server_before, pg_before = cpu_seconds(server_pid), postgres_cpu(workdir)
                http_stats, quality = await asyncio.to_thread(
                    measure_http, port, setup.token, scenario, requests, args.warmup
                )
                load = os.getloadavg()[0]
                per_request = 1000 / (requests + args.warmup)
                server_cpu = (cpu_seconds(server_pid) - server_before) * per_request
                pg_cpu = postgres_cpu_since(workdir, pg_before) * per_request
                service_stats = await measure_service(setup, scenario, requests, args.warmup)
                raw_stats = await measure_raw(setup, label, scenario, requests, args.warmup)
                target = TARGETS[label]
                verdict = "ok" if http_stats.pct(95) < target else "MISSED"
                print(
                    f"{label:<22} {fmt(http_stats)}  {fmt(service_stats)}  {fmt(raw_stats)}  "
                    f"< {target:>3.0f} {verdict:<6} {server_cpu:8.2f} + {pg_cpu:7.2f}    {load:4.1f}  {quality}",
                    flush=True,
                )
                results.append(
                    {
                        "scenario": label,
                        "http_ms": [http_stats.pct(50), http_stats.pct(95)],
                        "service_ms": [service_stats.pct(50), service_stats.pct(95)],
                        "raw_sql_ms": [raw_stats.pct(50), raw_stats.pct(95)],
                        "target_p95_ms": target,
                        "cpu_ms_per_request": {"server": server_cpu, "postgres": pg_cpu},
                        "load_average_1m": load,
                        "answers": str(quality),
                    }
                )
            number_only = await measure_raw_number_only(
                setup, cases["number (2-page text)"], args.requests, args.warmup
            )
            print(f"{'  raw: number alone':<22} {'':>15}  {'':>15}  {fmt(number_only)}", flush=True)
            print(f"\nserver RSS after the run: {rss_mb(server_pid):.0f} MB (the measured org's names in memory)")
            load, loaded_names = await measure_index_load(setup)
            print(f"loading the measured org's {loaded_names:,} names into memory: {fmt(load)} ms p50 / p95")
            print("\nthe 2-page text's header lines, S5 per line (ms p50 / p95): in memory | raw SQL, e.g.:")
            for line, in_memory, sql in await measure_lines(setup, cases["number (2-page text)"], args.slow_requests):
                print(f"  {fmt(in_memory)} | {fmt(sql)}  {line[:70]}", flush=True)
        print(
            f"\nPostgreSQL {setup.pg_version}, {os.cpu_count()} cores, Python {platform.python_version()};"
            f" measured org {setup.counts['customers']:,} customers / {setup.counts['contacts']:,} contacts,"
            f" all orgs {setup.counts['all_customers']:,} / {setup.counts['all_contacts']:,};"
            f" seeded in {setup.seconds_seed:.0f} s",
            flush=True,
        )
        (OUT_DIR / "detect.json").write_text(
            json.dumps({"setup": {**setup.counts, "pg": setup.pg_version}, "results": results}, indent=2)
        )
    finally:
        if args.keep:
            print(f"kept database {setup.database_name} ({setup.database_url})")
        else:
            await release_bench_database(setup.admin_url, setup.database_name, workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=300_000, help="customers in the measured org")
    parser.add_argument("--contacts", type=int, default=1_000_000, help="contacts in the measured org")
    parser.add_argument("--noise-orgs", type=int, default=3)
    parser.add_argument("--noise-customers", type=int, default=50_000, help="customers per noise org (3 contacts each)")
    parser.add_argument("--samples", type=int, default=500, help="distinct customers the requests are about")
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per scenario and column")
    parser.add_argument("--slow-requests", type=int, default=300, help="for the text and fuzzy-name scenarios")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the database (and the embedded server's data)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
