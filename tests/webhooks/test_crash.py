"""Webhook delivery through crashes (issue 11's crash test): every event arrives, in feed order, at least once.

A database of this test's own (no other worker competes for its endpoints). Concurrent writers (asyncpg
connections, many small transactions: inserts, updates, contacts, a few that commit late on purpose, some
rolled back, some that change nothing) make `EVENTS` changes, recorded as events by migration 0007's
triggers. One delivery worker at a time (`customer-master deliver`, a subprocess, retry pauses 0.05 s and
0.1 s) sends them to two endpoints of a loopback receiver — one for every event, one for `contact.*` only —
and is killed with SIGKILL five times and started again:

1. while the receiver holds a request of the `contact.*` endpoint (the event has arrived, its answer
   never reaches the worker: the crash between sending and recording), early, while the writers write;
2. the same at the other endpoint, a tenth of the way;
3. at whatever it is doing when a quarter of the events are delivered;
4. while it waits between attempts: the first endpoint answers 500 for a second;
5. while the receiver holds a request again, at 85 %.

Then:

- per endpoint, the accepted (2xx) requests without repeats are the feed's events, in feed order, each
  with its id in `webhook-id`;
- the requests, in order of arrival, are each the next event after the last accepted one, except (a) after a
  refused (500) request the same event again, also across a kill, and (b) the last accepted event once more
  as the first request of a worker started after a kill (the crash between sending and recording: a worker
  moves its cursor only after it saw a 2xx, one event at a time, so no other event can be repeated). The
  request that was held at a kill is repeated exactly so; nothing is repeated without a kill between;
- at most one request per endpoint is in flight at any moment;
- the feed walked with `after` — live, while the writers write, and once more afterwards — holds every
  committed change exactly once (the writers' ledger: type, customer, contact), nothing of a rolled-back
  transaction, in strictly increasing `sequence`, the same both times.

`CM_CRASH_EVENTS` changes the number of changes: the issue's 10,000 by default (60–80 s on two cores shared
with other work, about half of it the writers' own; bench/RESULTS.md), e.g. `CM_CRASH_EVENTS=2000
.venv/bin/pytest -m chaos tests/webhooks/test_crash.py` for a quicker run.
"""

import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from customer_master.app import create_app
from customer_master.auth import service as auth_service
from customer_master.auth.models import Role
from customer_master.auth.schemas import ApiTokenCreate
from customer_master.auth.tenancy import OrgId
from customer_master.config import Settings
from customer_master.db.migrate import upgrade_to_head
from customer_master.db.session import Database
from tests.conftest import JWT_SECRET, in_own_thread, run_async, serve_app

pytestmark = pytest.mark.chaos

EVENTS = int(os.environ.get("CM_CRASH_EVENTS", "10000"))
WRITERS = 4
EXECUTABLE = str(Path(sys.executable).with_name("customer-master"))
ALL, CONTACTS = "/all", "/contacts"  # the receiver's endpoints: every event (answers 500 for a while); `contact.*`
TYPES = {ALL: None, CONTACTS: ["contact.*"]}
REFUSE_S = 1.0  # how long the first endpoint answers 500
DELIVERY_DEADLINE_S = 300.0  # one worker at a time delivers some 150–700 events a second on 2 busy cores


# --- the receiver ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    path: str
    sequence: int
    webhook_id: str
    event_id: str
    accepted: bool  # answered (or meant to be answered) 2xx
    generation: int  # the worker process that was running when it arrived (1, 2, …)
    held: bool  # held at a kill: the worker never saw the answer
    at: float  # monotonic


class Receiver:
    """Records every request on arrival, in order; answers 200, or 500 while a path is refused; at the armed
    arrival it holds the answer, asks the test to kill the worker, and answers only after the kill."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: list[Arrival] = []
        self.generation = 0
        self.refused_until: dict[str, float] = {}  # path → monotonic time until which it answers 500
        self.hold_at: tuple[str, int] | None = None  # (path, arrival number at that path) to hold
        self.kill_requested = threading.Event()
        self.killed = threading.Event()
        self.connections = 0
        self.counts: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.accepted_sequences: dict[str, set[int]] = {}  # path → the events it accepted (without repeats)
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers

            def setup(self) -> None:
                super().setup()
                with receiver.lock:
                    receiver.connections += 1

            def finish(self) -> None:
                try:
                    with contextlib.suppress(OSError):
                        super().finish()
                finally:
                    with receiver.lock:
                        receiver.connections -= 1

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                receiver._handle(self)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a killed worker's connection resets: expected here

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        event = json.loads(body)
        path = request.path
        with self.lock:
            self.counts[path] += 1
            self.in_flight[path] += 1
            self.max_in_flight[path] = max(self.max_in_flight[path], self.in_flight[path])
            accepted = time.monotonic() >= self.refused_until.get(path, 0.0)
            held = accepted and self.hold_at is not None and self.hold_at[0] == path
            held = held and self.counts[path] >= self.hold_at[1]  # type: ignore[index]
            if held:
                self.hold_at = None
            self.accepted[path] += accepted
            if accepted:
                self.accepted_sequences.setdefault(path, set()).add(event["sequence"])
            self.arrivals.append(
                Arrival(
                    path,
                    event["sequence"],
                    request.headers.get("webhook-id", ""),
                    event["id"],
                    accepted,
                    self.generation,
                    held,
                    time.monotonic(),
                )
            )
        try:
            if held:
                self.kill_requested.set()
                self.killed.wait(30)
            request.send_response(200 if accepted else 500)
            request.send_header("Content-Length", "0")
            request.end_headers()
        finally:
            with self.lock:
                self.in_flight[path] -= 1

    def of(self, path: str) -> list[Arrival]:
        with self.lock:
            return [arrival for arrival in self.arrivals if arrival.path == path]

    def close(self) -> None:
        self.killed.set()
        self._server.shutdown()
        self._server.server_close()


# --- the worker processes -----------------------------------------------------------------------------------


@dataclass
class Kill:
    how: str
    generation: int  # the process killed
    at_deliveries: int  # accepted requests (all paths) when it was killed
    at: float  # monotonic


class Workers:
    """One `customer-master deliver` at a time; SIGKILL, then (once the receiver has closed every connection
    of the dead process, so that all it sent is recorded before the next one starts) the next one."""

    def __init__(self, database_url: str, receiver: Receiver, log_dir: Path) -> None:
        self.receiver = receiver
        self.log_dir = log_dir
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("CM_")}
        self.env |= {
            "DATABASE_URL": database_url,
            "CM_JWT_SECRET": JWT_SECRET,
            "CM_DATA_DIR": str(log_dir / "cm"),
            "CM_WEBHOOK_ALLOW_LOOPBACK": "1",
            "CM_WEBHOOK_RETRY_S": "0.05,0.1",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.kills: list[Kill] = []

    def start(self) -> None:
        generation = self.receiver.generation + 1
        with self.receiver.lock:
            self.receiver.generation = generation
        with (self.log_dir / f"deliver-{generation}.log").open("wb") as log:
            self.process = subprocess.Popen([EXECUTABLE, "deliver"], env=self.env, stdout=log, stderr=subprocess.STDOUT)

    async def kill_and_restart(self, how: str) -> None:
        assert self.process is not None
        assert self.process.poll() is None, "the worker died by itself: " + self.logs()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        with self.receiver.lock:
            delivered = sum(self.receiver.accepted.values())
        self.kills.append(Kill(how, self.receiver.generation, delivered, time.monotonic()))
        self.receiver.killed.set()
        deadline = time.monotonic() + 10
        while self.receiver.connections > 0:
            assert time.monotonic() < deadline, "the receiver kept a dead worker's connection open"
            await asyncio.sleep(0.005)
        self.receiver.killed.clear()
        self.receiver.kill_requested.clear()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in sorted(self.log_dir.glob("*.log"))
        )


# --- the writers --------------------------------------------------------------------------------------------

Change = tuple[str, str, str | None]  # type, customer id, contact id


@dataclass
class Ledger:
    """What the writers committed: exactly the events the feed must hold."""

    remaining: int
    committed: list[Change] = field(default_factory=list)
    rolled_back: set[str] = field(default_factory=set)  # customers of rolled-back transactions
    transactions: Counter[str] = field(default_factory=Counter)

    def take(self, wanted: int) -> int:
        """Reserve up to `wanted` of the remaining changes (one event loop: no await in between)."""
        taken = min(wanted, self.remaining)
        self.remaining -= taken
        return taken


class RolledBack(Exception):
    pass


async def write(number: int, database_url: str, org_id: uuid.UUID, ledger: Ledger) -> None:
    """One writer: small transactions of several kinds until the ledger's changes are all taken."""
    rng = random.Random(number)
    actor = json.dumps({"type": "system", "id": None, "label": f"crash-test writer {number}"})
    # Every commit of the org takes its place in the feed under one row lock (migration 0007): with the disk
    # flush inside that lock, the writers would queue for the disk (~2 ms a commit, far more on a busy one).
    # Their durability is no part of this test (no database crash), so their commits do not wait for it.
    conn = await asyncpg.connect(database_url, server_settings={"synchronous_commit": "off"})
    own: list[str] = []
    counter = 0

    # The transaction begins and is named in one round trip (a simple query of two statements).
    quoted_actor = "'" + actor.replace("'", "''") + "'"
    begin = f"BEGIN; SELECT set_config('cm.actor', {quoted_actor}, true), set_config('cm.source', 'cli', true)"

    @contextlib.asynccontextmanager
    async def transaction() -> AsyncIterator[None]:
        await conn.execute(begin)
        try:
            yield
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")

    async def create(count: int) -> list[str]:
        nonlocal counter
        counter += count
        rows = await conn.fetch(
            """INSERT INTO customer (org_id, name, erp_customer_number, default_currency, default_language)
               SELECT $1, 'Crash ' || n, n, 'EUR', 'de-DE' FROM unnest($2::text[]) AS n RETURNING id""",
            org_id,
            [f"W{number}-{counter - i}" for i in range(count)],
        )
        return [str(row["id"]) for row in rows]

    async def update(ids: list[str]) -> None:
        nonlocal counter
        counter += 1
        await conn.execute(
            "UPDATE customer SET billing_address_json = jsonb_build_object('city', $3::text)"
            " WHERE org_id = $1 AND id = ANY ($2::uuid[])",
            org_id,
            ids,
            f"Stadt {number}-{counter}",
        )

    async def add_contact(customer_id: str) -> str:
        nonlocal counter
        counter += 1
        contact_id: uuid.UUID = await conn.fetchval(
            "INSERT INTO customer_contact (org_id, customer_id, email, is_primary) VALUES ($1, $2, $3, false)"
            " RETURNING id",
            org_id,
            uuid.UUID(customer_id),
            f"c{counter}@writer{number}.example",
        )
        return str(contact_id)

    kinds = ["create", "create", "update", "update", "contact", "late", "together", "rollback", "nothing"]
    try:
        while ledger.remaining > 0:
            kind = rng.choice(kinds) if len(own) >= 3 else "create"
            changes: list[Change] = []
            try:
                async with transaction():
                    if kind == "create":
                        ids = await create(ledger.take(rng.randint(1, 3)))
                        own.extend(ids)
                        changes = [("customer.created", i, None) for i in ids]
                    elif kind in ("update", "late"):
                        ids = rng.sample(own, ledger.take(rng.randint(1, 2)))
                        await update(ids)
                        changes = [("customer.updated", i, None) for i in ids]
                        if kind == "late":  # took its positions early, commits after others: a late commit
                            await conn.execute("SELECT pg_sleep(0.02)")
                    elif kind == "contact":
                        if ledger.take(1):
                            customer_id = rng.choice(own)
                            changes = [("contact.created", customer_id, await add_contact(customer_id))]
                    elif kind == "together":  # created, changed and given a contact in one transaction: 2 events
                        taken = ledger.take(2)
                        if taken == 2:
                            [customer_id] = await create(1)
                            await update([customer_id])
                            contact_id = await add_contact(customer_id)
                            own.append(customer_id)
                            changes = [("customer.created", customer_id, None)]
                            changes.append(("contact.created", customer_id, contact_id))
                        else:
                            ledger.remaining += taken
                    elif kind == "rollback":
                        [customer_id] = await create(1)
                        await update(rng.sample(own, 1))
                        ledger.rolled_back.add(customer_id)
                        raise RolledBack
                    elif kind == "nothing":  # a write that changes nothing records nothing
                        await conn.execute(
                            "UPDATE customer SET name = name WHERE org_id = $1 AND id = $2", org_id, uuid.UUID(own[0])
                        )
            except RolledBack:
                pass
            ledger.committed.extend(changes)
            ledger.transactions[kind] += 1
    finally:
        await conn.close()


# --- the feed -----------------------------------------------------------------------------------------------


async def walk_feed(
    http: httpx.AsyncClient, expected: int, *, done: Callable[[], bool], wait_s: float = 0
) -> list[dict[str, Any]]:
    """The feed walked with `after` from its start until `expected` events came and `done()` holds."""
    events: list[dict[str, Any]] = []
    cursor = "0"
    while True:
        response = await http.get("/api/v1/events", params={"after": cursor, "limit": 200, "wait": wait_s})
        assert response.status_code == 200, response.text
        page = response.json()
        events.extend(page["items"])
        cursor = page["next_cursor"]
        if not page["items"] and len(events) >= expected and done():
            return events


# --- the test -----------------------------------------------------------------------------------------------


async def new_org(database_url: str) -> tuple[uuid.UUID, str]:
    database = Database(database_url, pool_size=1)
    try:
        async with database.transaction() as session:
            org = await auth_service.create_org(session, "crash", "Crash GmbH")
            _, token = await auth_service.create_api_token(
                session, OrgId(org.id), ApiTokenCreate(name="crash", role=Role.ADMIN)
            )
            return org.id, token
    finally:
        await database.dispose()


@pytest.fixture
def crash_database(scratch_database: str) -> str:
    in_own_thread(upgrade_to_head, scratch_database)
    return scratch_database


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    # The receiver's threads share this process's interpreter with the writers (its event loop) and the API
    # server's thread: a thread whose data came in waits for the others to hand over the interpreter, by
    # default up to 5 ms, several times per request. Handed over every 0.5 ms here, a receiver's answer is not
    # what paces the deliveries.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    yield receiver
    sys.setswitchinterval(interval)
    receiver.close()


def test_every_event_arrives_in_feed_order_through_kills_and_refusals(
    crash_database: str, receiver: Receiver, settings: Settings, tmp_path: Path
) -> None:
    started = time.monotonic()
    cpu_started = (time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN))
    org_id, token = run_async(new_org(crash_database))
    workers = Workers(crash_database, receiver, tmp_path)
    ledger = Ledger(EVENTS)
    app = create_app(crash_database, JWT_SECRET, deliver_webhooks=False)
    timings: dict[str, float] = {}
    with serve_app(app) as (base_url, _loop):
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
            for path, types in TYPES.items():
                response = http.post("/api/v1/webhooks", json={"url": receiver.url(path), "types": types})
                assert response.status_code == 201, response.text

        async def crash() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as http:
                workers.start()
                writing = asyncio.gather(*(write(n, crash_database, org_id, ledger) for n in range(WRITERS)))
                following = asyncio.create_task(walk_feed(http, EVENTS, done=writing.done, wait_s=1))
                chaos = asyncio.create_task(kill_five_times(workers, receiver))
                await writing
                timings["written"] = time.monotonic() - started
                live = await following
                await chaos
                timings["killed"] = time.monotonic() - started
                contacts = sum(change[0].startswith("contact.") for change in ledger.committed)
                await delivered(receiver, workers, {ALL: EVENTS, CONTACTS: contacts})
                timings["delivered"] = time.monotonic() - started
                walked = await walk_feed(http, EVENTS, done=lambda: True)
                return live, walked

        try:
            live, walked = run_async(crash())
        finally:
            workers.stop()

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    timings["cpu test process"] = time.process_time() - cpu_started[0]
    timings["cpu workers"] = children.ru_utime + children.ru_stime - cpu_started[1].ru_utime - cpu_started[1].ru_stime
    report(receiver, workers, ledger, timings)
    check_feed(live, walked, ledger)
    check_deliveries(ALL, receiver.of(ALL), walked, workers.kills)
    contact_events = [event for event in walked if event["type"].startswith("contact.")]
    check_deliveries(CONTACTS, receiver.of(CONTACTS), contact_events, workers.kills)
    assert receiver.max_in_flight == {ALL: 1, CONTACTS: 1}, "two requests to one endpoint at once"
    assert "Traceback" not in workers.logs(), workers.logs()


async def kill_five_times(workers: Workers, receiver: Receiver) -> None:
    """The five kills, one after the other, each armed once the worker before it runs."""

    async def until(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + DELIVERY_DEADLINE_S
        while not condition():
            assert time.monotonic() < deadline, f"the worker stopped delivering: {receiver.accepted}"
            await asyncio.sleep(0.002)

    async def held(path: str, at: int) -> None:
        with receiver.lock:
            receiver.hold_at = (path, max(at, receiver.counts[path] + 1))
        await until(receiver.kill_requested.is_set)
        await workers.kill_and_restart(f"holding a request of {path}")

    await held(CONTACTS, max(EVENTS // 200, 2))  # early: this endpoint keeps up with the writers
    await held(ALL, EVENTS // 10)
    await until(lambda: receiver.accepted[ALL] >= EVENTS // 4)
    await asyncio.sleep(random.uniform(0, 0.02))
    await workers.kill_and_restart("at whatever it was doing")
    await until(lambda: receiver.accepted[ALL] >= EVENTS * 4 // 10)
    with receiver.lock:
        refused_from = time.monotonic()
        receiver.refused_until[ALL] = refused_from + REFUSE_S
    await until(lambda: time.monotonic() >= refused_from + REFUSE_S * 0.4)
    await workers.kill_and_restart(f"while {ALL} answers 500")
    await held(ALL, EVENTS * 85 // 100)


async def delivered(receiver: Receiver, workers: Workers, expected: dict[str, int]) -> None:
    deadline = time.monotonic() + DELIVERY_DEADLINE_S
    while any(len(receiver.accepted_sequences.get(path, ())) < count for path, count in expected.items()):
        assert workers.process is not None
        assert workers.process.poll() is None, workers.logs()
        assert time.monotonic() < deadline, f"not delivered in time: {receiver.accepted}\n{workers.logs()}"
        await asyncio.sleep(0.05)


def report(receiver: Receiver, workers: Workers, ledger: Ledger, timings: dict[str, float]) -> None:
    repeats = {path: len(receiver.of(path)) - len({a.sequence for a in receiver.of(path)}) for path in (ALL, CONTACTS)}
    refused = sum(not a.accepted for a in receiver.arrivals)
    # Each worker's pace between its first and its last request, and the pause from a kill to the next request.
    paces, pauses = [], []
    for generation in range(1, receiver.generation + 1):
        own = [a for a in receiver.arrivals if a.generation == generation]
        if len(own) > 1:
            paces.append(f"{sum(a.accepted for a in own) / (own[-1].at - own[0].at):.0f}/s")
        kill = next((k for k in workers.kills if k.generation == generation - 1), None)
        if kill is not None and own:
            pauses.append(f"{own[0].at - kill.at:.1f} s")
    deliveries = len({(a.path, a.sequence) for a in receiver.arrivals})
    rate = deliveries / timings["delivered"]
    print(
        f"\n{EVENTS:,} changes in {sum(ledger.transactions.values()):,} transactions"
        f" ({dict(ledger.transactions)}) written after {timings['written']:.1f} s; five kills done after"
        f" {timings['killed']:.1f} s; {deliveries:,} deliveries done after {timings['delivered']:.1f} s"
        f" ({rate:.0f} deliveries/s over all, with the kills and restarts); CPU: this process (writers, receiver,"
        f" API) {timings['cpu test process']:.1f} s, the workers {timings['cpu workers']:.1f} s;"
        f" {refused} requests refused;"
        f" repeated requests per endpoint {repeats}; each worker's pace {paces}, from kill to next request {pauses};"
        " kills: " + "; ".join(f"{k.how} (worker {k.generation}, {k.at_deliveries:,} delivered)" for k in workers.kills)
    )


def check_feed(live: list[dict[str, Any]], walked: list[dict[str, Any]], ledger: Ledger) -> None:
    assert [e["id"] for e in live] == [e["id"] for e in walked], "the live walk and the later walk differ"
    sequences = [e["sequence"] for e in walked]
    assert all(a < b for a, b in zip(sequences, sequences[1:], strict=False)), "sequence does not strictly increase"
    assert len({e["id"] for e in walked}) == len(walked) == EVENTS
    found = Counter((e["type"], e["data"]["customer_id"], e["data"]["contact_id"]) for e in walked)
    assert found == Counter(ledger.committed), (found - Counter(ledger.committed), Counter(ledger.committed) - found)
    assert not ledger.rolled_back & {e["data"]["customer_id"] for e in walked}


def check_deliveries(path: str, arrivals: list[Arrival], feed: list[dict[str, Any]], kills: list[Kill]) -> None:
    """The rules of the module docstring, request by request."""
    index = {event["sequence"]: n for n, event in enumerate(feed)}
    ids = {event["sequence"]: event["id"] for event in feed}
    assert arrivals, path
    previous: Arrival | None = None
    repeats = 0
    for number, arrival in enumerate(arrivals):
        where = f"{path}, request {number} (sequence {arrival.sequence}, worker {arrival.generation})"
        assert arrival.sequence in index, f"{where}: not an event of the feed"
        assert arrival.webhook_id == arrival.event_id == ids[arrival.sequence], where
        at = index[arrival.sequence]
        if previous is None:
            assert at == 0, f"{where}: the first request is not the feed's first event"
        else:
            assert arrival.generation >= previous.generation, f"{where}: a dead worker's request came late"
            last = index[previous.sequence]
            if not previous.accepted:
                assert at == last, f"{where}: after a 500 the same event must come again"
            elif at == last:
                assert arrival.generation > previous.generation, f"{where}: repeated without a kill between"
                repeats += 1
            else:
                assert at == last + 1, f"{where}: after {previous.sequence} came {arrival.sequence}"
            if previous.held:
                assert at == last, f"{where}: the held event was not sent again after the kill"
        previous = arrival
    assert previous is not None
    assert previous.accepted, f"{path}: the last request was refused"
    assert index[previous.sequence] == len(feed) - 1, f"{path}: the last event did not arrive last"
    assert repeats <= len(kills), path
    assert sum(a.held for a in arrivals) >= 1, f"{path}: no request was held at a kill"
