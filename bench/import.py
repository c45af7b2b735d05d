"""Import benchmark: our CSV import against the raw-SQL floor, at 10k and 100k rows; peak RSS at 1M rows.

What it does, in one run:

1. A fresh database: on the embedded PostgreSQL (a throw-away data directory), or on the server of
   `DATABASE_URL` when it is set (a new database `cm_bench_import_…` there, dropped afterwards), migrated
   by the same code as `customer-master migrate`.
2. Generates realistic ERP files as German wholesalers send them: `;`-separated Windows-1252, one row per
   contact (one or two contacts per customer, the first primary), company names with umlauts and legal
   forms, street addresses, some shipping addresses, two metadata columns. A second, "changed" file has
   a fifth of the customers changed (city, a contact name, a metadata value).
3. For each size: our import (the service the API and the CLI call, in-process, one transaction), three
   times into one org — first (all inserts), the same file again (all unchanged), the changed file
   (updates) — and the raw-SQL floor three times into another org with the same files: `COPY` of the file
   itself into a staging table (PostgreSQL parses the CSV), then one set-based statement per table
   (customers upserted with `IS DISTINCT FROM`, replaced primaries un-marked, contacts upserted), one
   transaction. The floor validates nothing and reports nothing; it writes into the migrated schema as it
   is, so migration 0007's history triggers record its changes as they record any writer's (raw SQL
   too): that is the floor the ratios are taken against. For transparency the floor runs once more into a
   third org with those triggers disabled (the floor of earlier runs), and its ratio is printed beside.
   With `--history-cost`, our import also runs into a fourth org without the triggers, which says what
   recording the history costs us. `--runs N` repeats the three imports N times (new orgs each time)
   and prints the best of each side.
4. Peak RSS of `customer-master import` on a 1,000,000-row file, in its own process (sampled from /proc
   for the process and its children, and the kernel's own high-water mark via getrusage).

    .venv/bin/python bench/import.py                     # 10k and 100k rows, then the 1M-row RSS run
    .venv/bin/python bench/import.py --sizes 10000 --rss-rows 0
    .venv/bin/python bench/import.py --sizes 100000 --rss-rows 0 --runs 3
"""

import argparse
import asyncio
import contextlib
import os
import platform
import random
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from customer_master.auth import service as auth_service
from customer_master.auth.tenancy import OrgId
from customer_master.db.embedded import ensure_database, start_embedded_server, stop_embedded_server
from customer_master.db.migrate import upgrade_to_head
from customer_master.db.session import Database
from customer_master.imports import service
from customer_master.imports.rows import COLUMNS

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
METADATA_COLUMNS = ("metadata_discount_group", "metadata_payment_terms")

# --- realistic data -----------------------------------------------------------------------------

PREFIXES = [
    "Müller",
    "Schäfer",
    "Bäckerei Größer",
    "Hoffmann",
    "Schröder",
    "Köhler",
    "Jäger",
    "Krüger",
    "Weiß",
    "Böhm",
    "Meißner",
    "Günther",
    "Löffler",
    "Förster",
    "Würth",
    "Brückner",
    "Hülsmann",
    "Schütz",
    "Vögele",
    "Mößner",
    "Dürr",
    "Thüringer",
    "Nürnberger",
    "Kölner",
    "Münchner",
    "Österreicher",
    "Züricher",
    "Lübecker",
]
TRADES = [
    "Metallbau",
    "Holzhandel",
    "Elektrotechnik",
    "Sanitär",
    "Getränke",
    "Lebensmittel",
    "Baustoffe",
    "Werkzeuge",
    "Druckerei",
    "Maschinenbau",
    "Gärtnerei",
    "Kfz-Teile",
    "Bürobedarf",
    "Feinkost",
    "Fliesen",
    "Stahlhandel",
]
LEGAL_FORMS = ["GmbH", "GmbH & Co. KG", "AG", "KG", "e.K.", "OHG", "UG (haftungsbeschränkt)", "GmbH"]
STREETS = [
    "Hauptstraße",
    "Bahnhofstraße",
    "Gartenweg",
    "Schulstraße",
    "Lindenallee",
    "Mühlenweg",
    "Kirchplatz",
    "Industriestraße",
    "Am Marktplatz",
    "Bergstraße",
    "Friedrich-Ebert-Straße",
    "Königsallee",
    "Rosenstraße",
]
CITIES = [
    ("80331", "München", "BY", "DE"),
    ("50667", "Köln", "NW", "DE"),
    ("20095", "Hamburg", "HH", "DE"),
    ("70173", "Stuttgart", "BW", "DE"),
    ("90402", "Nürnberg", "BY", "DE"),
    ("04109", "Leipzig", "SN", "DE"),
    ("01067", "Dresden", "SN", "DE"),
    ("1010", "Wien", "", "AT"),
    ("8001", "Zürich", "ZH", "CH"),
    ("5020", "Salzburg", "", "AT"),
    ("60311", "Frankfurt am Main", "HE", "DE"),
    ("28195", "Bremen", "HB", "DE"),
    ("97070", "Würzburg", "BY", "DE"),
    ("23552", "Lübeck", "SH", "DE"),
    ("49074", "Osnabrück", "NI", "DE"),
]
FIRST_NAMES = ["Jürgen", "Günter", "Jörg", "Björn", "Sören", "Käthe", "Jürgen", "Anna", "Lena", "Max", "Ömer", "Zoë"]
LAST_NAMES = ["Müller", "Schmidt", "Schäfer", "Weiß", "Groß", "Krämer", "Bäcker", "Fuchs", "Köhler", "Lange"]
CURRENCY_BY_COUNTRY = {"DE": "EUR", "AT": "EUR", "CH": "CHF"}
LANGUAGE_BY_COUNTRY = {"DE": "de-DE", "AT": "de-AT", "CH": "de-CH"}
ASCII = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "ae", "Ö": "oe", "Ü": "ue", " ": "-"})


def _domain(name: str, number: int) -> str:
    word = name.split()[0].lower().translate(ASCII)
    return f"{''.join(ch for ch in word if ch.isalnum() or ch == '-')}-{number}.de"


def customer_rows(number: int, rng: random.Random, changed: bool) -> list[list[str]]:
    """The rows of one customer (one per contact), all customer columns repeated, as an ERP exports them."""
    name = f"{rng.choice(PREFIXES)} {rng.choice(TRADES)} {rng.choice(LEGAL_FORMS)}"
    postal_code, city, state, country = rng.choice(CITIES)
    street = f"{rng.choice(STREETS)} {rng.randint(1, 180)}"
    shipping = (f"Lager {rng.choice(STREETS)} {rng.randint(1, 99)}", postal_code, city, country)
    has_shipping = rng.random() < 0.3
    discount, terms = rng.choice("ABCD"), rng.choice(["14 Tage 2%", "30 Tage netto", "Vorkasse"])
    domain = _domain(name, number)
    contacts = [("einkauf", True)] + ([("buchhaltung", False)] if rng.random() < 0.5 else [])
    contact_names = [f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}" for _ in contacts]
    if changed:
        city = f"{city} (neu)"
        contact_names[0] = contact_names[0] + " jun."
        discount = "Z"
    rows = []
    for (local, primary), contact_name in zip(contacts, contact_names, strict=True):
        rows.append(
            [
                name, f"K{number:07d}", CURRENCY_BY_COUNTRY[country], LANGUAGE_BY_COUNTRY[country],
                street, "", city, postal_code, state, country,
                *((shipping[0], "", shipping[2], shipping[1], "", shipping[3]) if has_shipping else ("",) * 6),
                f"{local}@{domain}", contact_name, "ja" if primary else "nein",
                discount, terms,
            ]
        )  # fmt: skip
    return rows


def write_file(path: Path, rows: int, seed: int, changed_share: float = 0.0) -> int:
    """A `;`-separated Windows-1252 file of about `rows` rows; returns the number of rows written."""
    import csv

    rng = random.Random(seed)
    change_rng = random.Random(seed + 1)
    written = 0
    with path.open("w", encoding="cp1252", newline="") as file:
        writer = csv.writer(file, delimiter=";", lineterminator="\r\n")
        writer.writerow([*COLUMNS, *METADATA_COLUMNS])
        number = 0
        while written < rows:
            number += 1
            batch = customer_rows(number, rng, changed=change_rng.random() < changed_share)[: rows - written]
            writer.writerows(batch)
            written += len(batch)
    return written


# --- the floor ----------------------------------------------------------------------------------

FLOOR_COLUMNS = [*COLUMNS, *METADATA_COLUMNS]


def _address(prefix: str) -> str:
    keys = ("street", "street2", "city", "postal_code", "state", "country")
    pairs = ", ".join(f"'{key}', NULLIF({prefix}_{key}, '')" for key in keys)
    columns = ", ".join(f"NULLIF({prefix}_{key}, '')" for key in keys)
    return f"CASE WHEN num_nonnulls({columns}) > 0 THEN jsonb_build_object({pairs}) END"


FLOOR_SQL = [
    "SET LOCAL work_mem = '64MB'",
    "CREATE TEMPORARY TABLE floor_row (line serial, "
    + ", ".join(f"{column} text" for column in FLOOR_COLUMNS)
    + ") ON COMMIT DROP",
]
FLOOR_UPSERT_CUSTOMERS = f"""
INSERT INTO customer AS c (org_id, name, erp_customer_number, default_currency, default_language,
                           billing_address_json, shipping_address_json, metadata_json)
SELECT DISTINCT ON (erp_customer_number) $1, name, erp_customer_number, default_currency, default_language,
       {_address("billing")}, {_address("shipping")},
       jsonb_build_object('discount_group', metadata_discount_group, 'payment_terms', metadata_payment_terms)
  FROM floor_row ORDER BY erp_customer_number, line DESC
ON CONFLICT (org_id, erp_customer_number) WHERE erp_customer_number IS NOT NULL DO UPDATE
   SET name = EXCLUDED.name, default_currency = EXCLUDED.default_currency,
       default_language = EXCLUDED.default_language, billing_address_json = EXCLUDED.billing_address_json,
       shipping_address_json = EXCLUDED.shipping_address_json, metadata_json = EXCLUDED.metadata_json
 WHERE (c.name, c.default_currency, c.default_language, c.billing_address_json, c.shipping_address_json,
        c.metadata_json)
       IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.default_currency, EXCLUDED.default_language,
        EXCLUDED.billing_address_json, EXCLUDED.shipping_address_json, EXCLUDED.metadata_json)
"""
FLOOR_CONTACTS = """
CREATE TEMPORARY TABLE floor_contact ON COMMIT DROP AS
SELECT DISTINCT ON (c.id, lower(r.contact_email)) c.id AS customer_id, lower(r.contact_email)::citext AS email,
       r.contact_name AS name, r.contact_is_primary = 'ja' AS is_primary
  FROM floor_row r JOIN customer c ON c.org_id = $1 AND c.erp_customer_number = r.erp_customer_number
 WHERE r.contact_email <> ''
 ORDER BY c.id, lower(r.contact_email), r.line DESC
"""
FLOOR_UNMARK = """
UPDATE customer_contact cc SET is_primary = false FROM floor_contact fc
 WHERE fc.is_primary AND cc.org_id = $1 AND cc.customer_id = fc.customer_id AND cc.is_primary AND cc.email <> fc.email
"""
FLOOR_UPSERT_CONTACTS = """
INSERT INTO customer_contact AS cc (org_id, customer_id, email, name, is_primary)
SELECT $1, customer_id, email, name, is_primary FROM floor_contact
ON CONFLICT (org_id, customer_id, email) DO UPDATE SET name = EXCLUDED.name, is_primary = EXCLUDED.is_primary
 WHERE (cc.name, cc.is_primary) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.is_primary)
"""


async def floor_import(conn: asyncpg.Connection, org_id: OrgId, path: Path) -> float:
    """The floor on an open connection (kept open, so that its backend's CPU time can be read)."""
    started = time.perf_counter()
    async with conn.transaction():
        for statement in FLOOR_SQL:
            await conn.execute(statement)
        await conn.copy_to_table(
            "floor_row",
            source=path,
            columns=FLOOR_COLUMNS,
            format="csv",
            header=True,
            delimiter=";",
            encoding="WIN1252",
        )
        await conn.execute("ANALYZE floor_row")
        await conn.execute(FLOOR_UPSERT_CUSTOMERS, org_id)
        await conn.execute(FLOOR_CONTACTS, org_id)
        await conn.execute(FLOOR_UNMARK, org_id)
        await conn.execute(FLOOR_UPSERT_CONTACTS, org_id)
    return time.perf_counter() - started


# --- CPU accounting -----------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # the fields after "pid (comm) "


def server_cpu_s(postmaster_pid: int) -> float:
    """CPU seconds of the PostgreSQL server: the postmaster and every process it started (backends,
    parallel workers, WAL writer, checkpointer, autovacuum). The bench's server has no other clients."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and (int(entry.name) == postmaster_pid or int(fields[1]) == postmaster_pid):
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def client_cpu_s() -> float:
    """CPU seconds of this process (all threads) and of its finished children (the e-mail worker)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


async def postmaster_pid(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        data_directory = await conn.fetchval("SHOW data_directory")
    finally:
        await conn.close()
    return int((Path(data_directory) / "postmaster.pid").read_text().split()[0])


@dataclass
class Cost:
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float

    @property
    def cpu_s(self) -> float:
        return self.client_cpu_s + self.server_cpu_s


@contextlib.contextmanager
def measured(postmaster: int) -> Iterator[list[Cost]]:
    """Wall time and CPU (ours and the server's) of the block, appended to the yielded list."""
    result: list[Cost] = []
    wall, client, server = time.perf_counter(), client_cpu_s(), server_cpu_s(postmaster)
    yield result
    result.append(Cost(time.perf_counter() - wall, client_cpu_s() - client, server_cpu_s(postmaster) - server))


# --- ours ---------------------------------------------------------------------------------------


async def our_import(database: Database, org_id: OrgId, path: Path) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    with path.open("rb") as file:
        async with database.transaction() as session:
            report = await service.import_customers_csv(
                session,
                org_id,
                file,
                service.ImportSource(kind="cli", file_name=path.name),
                dry_run=False,
                max_line_length=1_048_576,
            )
    elapsed = time.perf_counter() - started
    keys = ("rows", "imported", "updated", "unchanged", "failed", "contacts_created", "contacts_updated")
    counts = {key: getattr(report, key) for key in keys}
    return elapsed, counts


async def create_org(database: Database, slug: str) -> OrgId:
    async with database.transaction() as session:
        return OrgId((await auth_service.create_org(session, slug, slug)).id)


def _ratio(ours: Cost, floor: Cost) -> str:
    """Ours as a share of the floor's speed, by wall time and by CPU time."""
    return f"{100 * floor.wall_s / ours.wall_s:5.1f} % wall, {100 * floor.cpu_s / ours.cpu_s:5.1f} % CPU"


def _cost(cost: Cost) -> str:
    return f"{cost.wall_s:6.2f} s wall, CPU {cost.cpu_s:6.2f} s"


@dataclass
class Result:
    label: str
    rows: int
    ours: Cost
    floor: Cost
    bare_floor: Cost
    counts: dict[str, int]
    without_history: Cost | None = None

    def line(self) -> str:
        rate = self.rows / self.ours.wall_s
        text = (
            f"{self.label:<22} {self.rows:>7,} rows | ours {_cost(self.ours)} (Python {self.ours.client_cpu_s:5.2f}"
            f" + PostgreSQL {self.ours.server_cpu_s:5.2f}), {rate:>6,.0f} rows/s"
            f" | floor {_cost(self.floor)}: ours = {_ratio(self.ours, self.floor)}"
            f" | floor without history {_cost(self.bare_floor)}: ours = {_ratio(self.ours, self.bare_floor)}"
        )
        if self.without_history is not None:
            text += (
                f" | history costs us {100 * (self.ours.wall_s / self.without_history.wall_s - 1):+5.1f} % wall,"
                f" {100 * (self.ours.cpu_s / self.without_history.cpu_s - 1):+5.1f} % CPU"
            )
        return f"{text} | {self.counts}"


def best_of(results: list[Result]) -> Result:
    """Each side's best: its shortest wall time and its least CPU time (each of any of the runs)."""

    def best(costs: list[Cost]) -> Cost:
        """The shortest wall time of any run; the CPU time of the run that took the least."""
        least = min(costs, key=lambda cost: cost.cpu_s)
        return Cost(min(cost.wall_s for cost in costs), least.client_cpu_s, least.server_cpu_s)

    without = [r.without_history for r in results if r.without_history is not None]
    return Result(
        f"best of {len(results)}: {results[0].label}",
        results[0].rows,
        best([r.ours for r in results]),
        best([r.floor for r in results]),
        best([r.bare_floor for r in results]),
        results[0].counts,
        best(without) if without else None,
    )


# Migration 0007's history triggers: off for the floor without history and for "ours without history".
HISTORY_TRIGGERS = {
    "customer": ("customer_changes_inserted", "customer_changes_updated", "customer_changes_deleted"),
    "customer_contact": ("contact_changes_inserted", "contact_changes_updated", "contact_changes_deleted"),
}


async def history_entries(conn: asyncpg.Connection, org_id: OrgId) -> int:
    """The org's history entries: an import writes one per customer and contact it created or changed."""
    count: int = await conn.fetchval("SELECT count(*) FROM change_entry WHERE org_id = $1", org_id)
    return count


@contextlib.asynccontextmanager
async def history_off(conn: asyncpg.Connection) -> AsyncIterator[None]:
    for table, triggers in HISTORY_TRIGGERS.items():
        for trigger in triggers:
            await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
    try:
        yield
    finally:
        for table, triggers in HISTORY_TRIGGERS.items():
            for trigger in triggers:
                await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")


SCENARIOS = ("first (inserts)", "same again (unchanged)", "changed (updates)")


async def run_size(url: str, rows: int, work: Path, runs: int, history_cost: bool) -> list[Result]:
    first, changed = work / f"first-{rows}.csv", work / f"changed-{rows}.csv"
    write_file(first, rows, seed=rows)
    write_file(changed, rows, seed=rows, changed_share=0.2)
    database = Database(url, pool_size=2)
    try:
        results: dict[str, list[Result]] = {label: [] for label in SCENARIOS}
        postmaster = await postmaster_pid(url)
        floor_conn = await asyncpg.connect(url)
        for _ in range(runs):
            orgs = {
                side: await create_org(database, f"{side}-{rows}-{secrets.token_hex(3)}")
                for side in ("ours", "floor", "bare-floor", "bare-ours")
            }
            for label, path in zip(SCENARIOS, (first, first, changed), strict=True):
                entries_before = await history_entries(floor_conn, orgs["ours"])
                with measured(postmaster) as ours:
                    _, counts = await our_import(database, orgs["ours"], path)
                counts["history_entries"] = await history_entries(floor_conn, orgs["ours"]) - entries_before
                await asyncio.sleep(1)  # let the server's background writers settle between the runs
                with measured(postmaster) as floor:
                    await floor_import(floor_conn, orgs["floor"], path)
                await asyncio.sleep(1)
                without_history = None
                async with history_off(floor_conn):
                    with measured(postmaster) as bare_floor:
                        await floor_import(floor_conn, orgs["bare-floor"], path)
                    await asyncio.sleep(1)
                    if history_cost:
                        with measured(postmaster) as bare_ours:
                            await our_import(database, orgs["bare-ours"], path)
                        without_history = bare_ours[0]
                        await asyncio.sleep(1)
                result = Result(label, rows, ours[0], floor[0], bare_floor[0], counts, without_history)
                print(result.line(), flush=True)
                results[label].append(result)
        await floor_conn.close()
        if runs > 1:
            for label in SCENARIOS:
                print(best_of(results[label]).line(), flush=True)
        return [result for label in SCENARIOS for result in results[label]]
    finally:
        await database.dispose()


# --- peak RSS of the CLI ------------------------------------------------------------------------


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of the process and all its descendants, from /proc."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
    return total


def cli_peak_rss(url: str, rows: int, work: Path) -> tuple[float, float, float, str]:
    path = work / f"rss-{rows}.csv"
    write_file(path, rows, seed=7)
    slug = f"rss-{secrets.token_hex(3)}"

    async def make_org() -> None:
        database = Database(url, pool_size=1)
        try:
            await create_org(database, slug)
        finally:
            await database.dispose()

    asyncio.run(make_org())
    env = {**os.environ, "DATABASE_URL": url}
    cli = str(Path(sys.executable).parent / "customer-master")
    started = time.perf_counter()
    process = subprocess.Popen([cli, "import", str(path), "--org", slug], env=env, stdout=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_kib(process.pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    stop.set()
    sampler.join()
    elapsed = time.perf_counter() - started
    high_water_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = " ".join(line.strip() for line in output.splitlines()[1:4])
    path.unlink()
    return peak / 1024, high_water_kib / 1024, elapsed, summary


# --- main ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    server_url = os.environ.get("DATABASE_URL")
    data_dir = None
    if not server_url:
        data_dir = Path(tempfile.mkdtemp(prefix="cm-bench-import-"))
        server_url = start_embedded_server(data_dir)
    name = f"cm_bench_import_{secrets.token_hex(4)}"
    url = asyncio.run(ensure_database(server_url, name))
    upgrade_to_head(url)
    try:
        yield url
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(server_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

        with contextlib.suppress(Exception):
            asyncio.run(drop())
        if data_dir is not None:
            stop_embedded_server(data_dir)
            shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--rss-rows", type=int, default=1_000_000, help="0 skips the RSS run")
    parser.add_argument("--runs", type=int, default=1, help="repeat the three imports, print the best of each side")
    parser.add_argument("--history-cost", action="store_true", help="also our import without the history triggers")
    args = parser.parse_args()
    OUT_DIR.mkdir(exist_ok=True)
    print(f"# import benchmark — {time.strftime('%Y-%m-%d %H:%M')}, {platform.platform()}, {os.cpu_count()} cores")
    with bench_database() as url, tempfile.TemporaryDirectory(prefix="cm-bench-files-") as work_dir:
        work = Path(work_dir)

        async def version() -> str:
            conn = await asyncpg.connect(url)
            try:
                return str(await conn.fetchval("SHOW server_version"))
            finally:
                await conn.close()

        print(f"# PostgreSQL {asyncio.run(version())}", flush=True)
        for rows in args.sizes:
            asyncio.run(run_size(url, rows, work, args.runs, args.history_cost))
        if args.rss_rows:
            peak, high_water, elapsed, summary = cli_peak_rss(url, args.rss_rows, work)
            print(
                f"CLI import of {args.rss_rows:,} rows: {elapsed:.1f} s ({args.rss_rows / elapsed:,.0f} rows/s),"
                f" peak RSS {peak:.0f} MB (process tree, sampled), kernel high-water mark {high_water:.0f} MB;"
                f" {summary}",
                flush=True,
            )


if __name__ == "__main__":
    main()
