"""Duplicates benchmark (issue 12): `GET /api/v1/duplicates` at 100,000 customers — quality and latency.

1. A fresh database (embedded PostgreSQL, or a new database on `DATABASE_URL`'s server), migrated.
2. One org with `--customers` customers (COPY): 95 % distinct companies — German names (surname, trade, city,
   made-up brands, legal forms; every company key distinct), a mail domain of their own with 1–2 contacts (5 % on
   public mail providers instead), among them near-namesakes that are NOT duplicates ("Müller Holzbau GmbH"
   beside "Müller Elektro KG", each on its own domain) and one group of 100 companies on one group domain
   ("Nordstern <trade>", different companies); and 5 % planted duplicates of distinct companies, a quarter each:
   - `legal form`: the same name with another legal form, no contact in common (a public mailbox);
   - `typo`: one typo in the name, a contact on the same domain (another mailbox);
   - `same domain`: the name with its city left out or in capitals, a contact on the same domain;
   - `shared e-mail`: a typo or another legal form, and the same contact e-mail.
3. The real server (`customer-master serve`, its own process), a VIEWER token: walks every page of
   `min_score=0.8` (limit 200) and measures precision and recall of the listed pairs against the planted ones;
   then the first page (limit 50) one request after another: warm (the name set in memory) and cold (a customer
   renamed before each request, so the org's name version moves and the names are loaded and joined anew),
   wall p50/p95 and the server's and PostgreSQL's CPU per request.

    .venv/bin/python bench/duplicates.py                      # 100,000 customers
    .venv/bin/python bench/duplicates.py --customers 10000 --requests 20
"""

import argparse
import asyncio
import http.client
import json
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from common import LEGAL_FORMS, SURNAMES, TRADES, CpuMeter, release_bench_database, running_server
from customer_master.auth import service as auth_service
from customer_master.auth.models import Role
from customer_master.auth.schemas import ApiTokenCreate
from customer_master.auth.tenancy import OrgId
from customer_master.db.embedded import ensure_database, start_embedded_server
from customer_master.db.migrate import upgrade_to_head
from customer_master.db.session import Database
from customer_master.detection.signals import company_key
from customer_master.duplicates import names as names_module
from customer_master.duplicates import service

OUT_DIR = Path(__file__).resolve().parent / "out"

SYLLABLES = [
    "Ber", "Hol", "Kam", "Lin", "Mar", "Ost", "Ran", "Sel", "Tan", "Wal", "Zim", "Eck", "Fal", "Grö", "Hag",
    "Jan", "Kor", "Lau", "Mol", "Nie", "Pet", "Reh", "Sto", "Thi", "Ulm", "Vos", "Wie", "Bran", "Dre", "Frü",
    "Al", "Bo", "Ka", "Ri", "Su", "Te", "Va", "No", "Lu", "Mi",
]  # fmt: skip
ENDINGS = [
    "mann", "berg", "feld", "hoff", "ner", "ler", "inger", "hauser", "brink", "kamp", "wald", "meier", "stedt",
    "horst", "bach", "rich", "ke", "sen", "dorf", "thal", "tec", "tex", "ron", "vis", "lux", "tra", "mo", "na",
]  # fmt: skip
MORE_TRADES = [
    "Bau", "Holzbau", "Tiefbau", "Elektro", "Sanitär", "Haustechnik", "Transporte", "Logistik", "Handel", "Technik",
    "Service", "Systeme", "Consulting", "Immobilien", "Hotel", "Gasthof", "Optik", "Blumen", "Metzgerei",
    "Konditorei", "Weinhandel", "Maschinenbau", "Anlagenbau", "Feinmechanik", "Kunststofftechnik", "Glaserei",
    "Zimmerei", "Schlosserei", "Raumausstattung", "Gartenbau", "Solartechnik", "Medizintechnik", "Dentallabor",
    "Sanitätshaus", "Schuhhaus", "Modehaus", "Umzüge", "Entsorgung", "Recycling", "Baumaschinen", "Gerüstbau",
    "Fensterbau", "Trockenbau", "Parkett", "Küchenstudio", "Elektronik", "Software", "Werbetechnik", "Catering",
]  # fmt: skip
CITIES = [
    "München", "Köln", "Düsseldorf", "Nürnberg", "Würzburg", "Lübeck", "Göttingen", "Osnabrück", "Berlin",
    "Hamburg", "Frankfurt", "Stuttgart", "Leipzig", "Dresden", "Fürth", "Wien", "Graz", "Bremen", "Augsburg",
    "Regensburg", "Freiburg", "Karlsruhe", "Mannheim", "Kassel", "Erfurt", "Rostock", "Kiel", "Hannover",
    "Münster", "Dortmund", "Essen", "Aachen", "Bonn", "Mainz", "Passau", "Rosenheim", "Linz", "Salzburg", "Bern",
]  # fmt: skip
PUBLIC = ["gmx.de", "web.de", "t-online.de", "gmail.com", "gmx.at", "bluewin.ch"]
MAILBOXES = ["einkauf", "bestellung", "buchhaltung", "info", "lager", "verkauf"]
CITY_WORDS = {word for city in CITIES for word in company_key(city).split()}
KINDS = ["legal form", "typo", "same domain", "shared e-mail"]


def slug(text: str) -> str:
    folded = text.lower().translate(str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"}))
    return "-".join("".join(c if c.isalnum() else " " for c in folded).split())


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.surnames = SURNAMES + [a + b for a in SYLLABLES for b in ENDINGS]
        self.surnames += [a + b.lower() + c for a in SYLLABLES for b in SYLLABLES for c in ENDINGS]
        self.trades = TRADES + MORE_TRADES
        self.keys: set[str] = set()
        self.rows: list[dict[str, Any]] = []

    def _weighted(self, items: list[str], skew: float) -> str:
        # Common words first (a Zipf-like choice): Müller and Bau are everywhere, made-up words rare.
        return items[min(len(items) - 1, int(len(items) * self.rng.random() ** skew))]

    def stem(self, surname: str | None = None) -> str:
        r = self.rng.random
        s = surname or self._weighted(self.surnames, 2.5)
        t = self._weighted(self.trades, 1.5)
        pattern = r()
        if pattern < 0.3:
            return f"{s} {t}"
        if pattern < 0.45:
            return f"{t} {s} & {self._weighted(self.surnames, 2.5)}"
        if pattern < 0.6:
            return f"{s} {t} {self.rng.choice(CITIES)}"
        if pattern < 0.7:
            return f"{s} & {self._weighted(self.surnames, 2.5)}"
        if pattern < 0.85:
            brand = self.rng.choice(SYLLABLES) + self.rng.choice(SYLLABLES).lower() + self.rng.choice(ENDINGS)
            return f"{brand} {t}"
        return f"{t} {self.rng.choice(CITIES)} {s}"

    def company(
        self, stem: str | None = None, domain: str | None = None, public: bool = False
    ) -> dict[str, Any] | None:
        stem = stem or self.stem()
        name = f"{stem} {self.rng.choice(LEGAL_FORMS)}"
        # Distinct companies have distinct words (cities aside): "Müller Bau Köln" and "Bau Köln Müller" or
        # "Müller Bau" would be one company written two ways, not namesakes.
        key = " ".join(sorted(set(company_key(name).split()) - CITY_WORDS))
        if key in self.keys:
            return None
        self.keys.add(key)
        i = len(self.rows)
        row = {"id": uuid.uuid4(), "i": i, "stem": stem, "name": name, "erp": f"K-{i}", "emails": []}
        if public:
            row["emails"] = [f"{slug(stem)[:20]}.{i}@{self.rng.choice(PUBLIC)}"]
        else:
            row["domain"] = domain or f"{slug(stem)[:30]}-{i}.de"
            boxes = self.rng.sample(MAILBOXES, self.rng.randint(1, 2)) if domain is None else [slug(stem)]
            row["emails"] = [f"{m}@{row['domain']}" for m in boxes]
        self.rows.append(row)
        return row

    def typo(self, text: str) -> str:
        letters = [i for i, c in enumerate(text) if c.isalpha()]
        for _ in range(20):
            at = self.rng.choice(letters[1:])
            how = self.rng.randrange(4)
            if how == 0 and at + 1 < len(text) and text[at + 1].isalpha():
                changed = text[:at] + text[at + 1] + text[at] + text[at + 2 :]
            elif how == 1:
                changed = text[:at] + text[at + 1 :]
            elif how == 2:
                changed = text[:at] + text[at] + text[at:]
            else:
                changed = text[:at] + self.rng.choice("aeinrst") + text[at + 1 :]
            if company_key(changed) != company_key(text):
                return changed
        return text + "x"

    def duplicate(self, base: dict[str, Any], kind: str) -> dict[str, Any]:
        r = self.rng
        other_forms = [f for f in LEGAL_FORMS if f not in base["name"]] or ["AG"]
        if kind == "legal form":
            name = f"{base['stem']} {r.choice(other_forms)}"
            emails = [f"{slug(base['stem'])[:20]}.dup{len(self.rows)}@{r.choice(PUBLIC)}"]
        elif kind == "typo":
            name = f"{self.typo(base['stem'])} {r.choice(LEGAL_FORMS)}"
            emails = [f"dispo{len(self.rows)}@{base['domain']}"]
        elif kind == "same domain":
            words = base["stem"].split()
            shorter = " ".join(w for w in words if w not in CITIES) if len(words) > 2 else base["stem"].upper()
            name = f"{shorter} {r.choice(LEGAL_FORMS)}"
            emails = [f"zentrale{len(self.rows)}@{base['domain']}"]
        else:
            stem = self.typo(base["stem"]) if r.random() < 0.5 else base["stem"]
            name = f"{stem} {r.choice(other_forms)}"
            emails = [base["emails"][0]]
        i = len(self.rows)
        row = {"id": uuid.uuid4(), "i": i, "stem": base["stem"], "name": name, "erp": f"K-{i}", "emails": emails}
        self.rows.append(row)
        return row


def generate(customers: int, seed: int) -> tuple[list[dict[str, Any]], dict[frozenset[uuid.UUID], str], Counter[str]]:
    """The org's customers and the planted duplicate pairs (with their kinds)."""
    g = Generator(seed)
    planted = customers // 20
    namesakes = customers * 3 // 100
    group = 100
    bases_wanted = customers - planted - namesakes - group
    while len(g.rows) < bases_wanted:
        g.company(public=g.rng.random() < 0.05)
    bases = list(g.rows)
    while len(g.rows) < bases_wanted + namesakes:  # the same surname, another trade: not a duplicate
        base = g.rng.choice(bases)
        g.company(g.stem(surname=base["stem"].split()[0]))
    trades = list(dict.fromkeys(g.trades))
    for trade in trades[:group]:
        g.company(f"Nordstern {trade}", domain="nordstern-gruppe.de")
    truth: dict[frozenset[uuid.UUID], str] = {}
    kinds: Counter[str] = Counter()
    private = [b for b in bases if "domain" in b]
    for n, base in enumerate(g.rng.sample(private, planted)):
        kind = KINDS[n % len(KINDS)]
        duplicate = g.duplicate(base, kind)
        truth[frozenset((base["id"], duplicate["id"]))] = kind
        kinds[kind] += 1
    g.rng.shuffle(g.rows)
    return g.rows, truth, kinds


# --- the database ---------------------------------------------------------------------------------


async def prepare(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    name = f"cm_bench_dup_{uuid.uuid4().hex[:6]}"
    admin_url = os.environ.get("DATABASE_URL") or await asyncio.to_thread(start_embedded_server, workdir)
    url = await ensure_database(admin_url, name)
    await asyncio.to_thread(upgrade_to_head, url)
    database = Database(url, pool_size=1)
    try:
        async with database.transaction() as session:
            org = await auth_service.create_org(session, "bench-dup", "Nordlicht Handelskontor GmbH")
            _, token = await auth_service.create_api_token(
                session, OrgId(org.id), ApiTokenCreate(name="bench", role=Role.VIEWER)
            )
    finally:
        await database.dispose()
    started = time.perf_counter()
    rows, truth, kinds = generate(args.customers, args.seed)
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "customer",
                columns=["id", "org_id", "name", "erp_customer_number", "default_currency", "default_language"],
                records=[(r["id"], org.id, r["name"], r["erp"], "EUR", "de-DE") for r in rows],
            )
            contacts = [(r["id"], e, n == 0) for r in rows for n, e in enumerate(r["emails"])]
            await conn.execute(
                """INSERT INTO customer_contact (org_id, customer_id, email, is_primary)
                   SELECT $1, c, e, p FROM unnest($2::uuid[], $3::text[], $4::bool[]) AS t(c, e, p)""",
                org.id,
                [c[0] for c in contacts],
                [c[1] for c in contacts],
                [c[2] for c in contacts],
            )
        await conn.execute("VACUUM ANALYZE")
        pg_version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    print(f"seeded {len(rows):,} customers ({dict(kinds)} planted) in {time.perf_counter() - started:.0f} s")
    return {
        "url": url, "admin_url": admin_url, "name": name, "org_id": org.id, "token": token,
        "truth": truth, "kinds": kinds, "rows": rows, "pg": pg_version,
    }  # fmt: skip


# --- measuring ------------------------------------------------------------------------------------


def get(conn: http.client.HTTPConnection, token: str, query: str) -> dict[str, Any]:
    conn.request("GET", f"/api/v1/duplicates?{query}", headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"GET /duplicates answered {response.status}: {body[:300]!r}")
    result: dict[str, Any] = json.loads(body)
    return result


def walk(port: int, token: str, min_score: float) -> tuple[list[dict[str, Any]], float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    items: list[dict[str, Any]] = []
    cursor = None
    began = time.perf_counter()
    while True:
        page = get(conn, token, f"min_score={min_score}&limit=200" + (f"&cursor={cursor}" if cursor else ""))
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    conn.close()
    return items, time.perf_counter() - began


def quality(items: list[dict[str, Any]], setup: dict[str, Any]) -> dict[str, Any]:
    listed = {frozenset(uuid.UUID(c["id"]) for c in item["customers"]): item for item in items}
    truth: dict[frozenset[uuid.UUID], str] = setup["truth"]
    found = [pair for pair in listed if pair in truth]
    group = {r["id"] for r in setup["rows"] if r["name"].startswith("Nordstern")}
    false = [pair for pair in listed if pair not in truth]
    missed = Counter(kind for pair, kind in truth.items() if pair not in listed)
    return {
        "listed": len(listed),
        "planted": len(truth),
        "precision": len(found) / max(1, len(listed)),
        "recall": len(found) / max(1, len(truth)),
        "missed_by_kind": dict(missed),
        "false_positives_in_group_domain": sum(pair <= group for pair in false),
        "false_positive_examples": [
            " | ".join(c["name"] for c in listed[pair]["customers"]) + f" ({listed[pair]['score']})"
            for pair in false[:: max(1, len(false) // 12)][:12]
        ],
        "false_positive_reasons": dict(
            Counter("+".join(r["signal"] for r in listed[pair]["reasons"]) for pair in false)
        ),
    }


def latencies(port: int, token: str, requests: int, server: CpuMeter, pg: CpuMeter, rename: Any) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    wall: list[float] = []
    cpu_server, cpu_pg = server.seconds(), pg.seconds()
    for _ in range(requests):
        if rename is not None:
            rename()
        began = time.perf_counter()
        page = get(conn, token, "limit=50")
        wall.append(time.perf_counter() - began)
        assert len(page["items"]) == 50
    conn.close()
    ordered = sorted(wall)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000

    def per_request(before: float | None, meter: CpuMeter) -> float | None:
        after = meter.seconds()
        return None if before is None or after is None else (after - before) * 1000 / requests

    return {
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "mean_ms": statistics.fmean(wall) * 1000,
        "server_cpu_ms": per_request(cpu_server, server),
        "pg_cpu_ms": per_request(cpu_pg, pg),
    }


async def name_join_costs(setup: dict[str, Any]) -> dict[str, Any]:
    """The in-memory name join itself, in this process: load, and the pairs per threshold (cold)."""
    database = Database(setup["url"], pool_size=1)
    costs: dict[str, Any] = {}
    try:
        async with database.transaction() as session:
            began = time.perf_counter()
            names = await service.current_names(session, OrgId(setup["org_id"]))
            costs["load_s"] = time.perf_counter() - began
            for threshold in (0.75, service.name_threshold(8000), 0.5):
                began = time.perf_counter()
                pairs = names.pairs(threshold)
                costs[f"pairs_{threshold:.4f}"] = {
                    "seconds": time.perf_counter() - began,
                    "pairs": len(pairs.low),
                    "enumerated": pairs.enumerated,
                    "skipped_lists": pairs.skipped_lists,
                    "longest_list": pairs.longest_list,
                }
        # What the budget leaves out: the same joins without it (exact), compared pair by pair.
        budget, names_module.PAIR_BUDGET = names_module.PAIR_BUDGET, 10**12
        try:
            for threshold in (0.75, service.name_threshold(8000)):
                budgeted = names.pairs(threshold)
                began = time.perf_counter()
                exact = names._all_pairs(threshold)  # not kept: the budgeted pairs stay the ones served
                n = names.size
                missing = np.setdiff1d(exact.low * n + exact.high, budgeted.low * n + budgeted.high)
                costs[f"exact_{threshold:.4f}"] = {
                    "seconds": time.perf_counter() - began,
                    "pairs": len(exact.low),
                    "enumerated": exact.enumerated,
                    "missed_with_budget": len(missing),
                }
        finally:
            names_module.PAIR_BUDGET = budget
    finally:
        await database.dispose()
    return costs


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cm-bench-dup-"))
    setup = await prepare(args, workdir)
    results: dict[str, Any] = {"customers": args.customers, "pg": setup["pg"]}
    try:
        OUT_DIR.mkdir(exist_ok=True)
        costs = await name_join_costs(setup)
        results["name_join"] = costs
        print(f"name join in process: {json.dumps(costs, indent=1)}", flush=True)
        rename_conn = await asyncpg.connect(setup["url"])
        loop = asyncio.get_running_loop()
        renamed = [0]

        def rename() -> None:
            renamed[0] += 1
            statement = (
                "UPDATE customer SET name = name || ' ' WHERE id = (SELECT id FROM customer ORDER BY id LIMIT 1)"
            )
            asyncio.run_coroutine_threadsafe(rename_conn.execute(statement), loop).result()

        postmaster = workdir / "pgdata" / "postmaster.pid"
        pg_pid = int(postmaster.read_text().split()[0]) if postmaster.exists() else None
        with running_server(setup["url"], OUT_DIR / "duplicates-server.log", workdir) as (port, server_pid):
            server, pg = CpuMeter(server_pid), CpuMeter(pg_pid)
            for min_score in (0.86, 0.8):
                items, seconds = await asyncio.to_thread(walk, port, setup["token"], min_score)
                results[f"walk_{min_score}"] = {"seconds": seconds, **quality(items, setup)}
                print(f"walk of min_score={min_score} (limit 200): {json.dumps(results[f'walk_{min_score}'])}")
            scores = Counter(item["score"] for item in items)
            results["scores"] = {str(k): v for k, v in sorted(scores.items(), reverse=True)[:12]}
            warm = await asyncio.to_thread(latencies, port, setup["token"], args.requests, server, pg, None)
            results["first_page_warm"] = warm
            print(f"first page, warm: {json.dumps(warm)}", flush=True)
            cold = await asyncio.to_thread(latencies, port, setup["token"], args.cold_requests, server, pg, rename)
            results["first_page_cold"] = cold
            print(f"first page, names changed before each request: {json.dumps(cold)}", flush=True)
        await rename_conn.close()
        results["machine"] = f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}"
        print(results["machine"])
        (OUT_DIR / "duplicates.json").write_text(json.dumps(results, indent=2, default=str))
    finally:
        await release_bench_database(setup["admin_url"], setup["name"], workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30, help="timed first-page requests (warm)")
    parser.add_argument("--cold-requests", type=int, default=10, help="timed first-page requests after a rename")
    parser.add_argument("--seed", type=int, default=1202)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
