"""The delivery worker (API.md §9 `deliver`, §11): several at once never send to one endpoint at once; a lost
claim connection is survived; `customer-master deliver` stops cleanly; the metrics are exposed."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from customer_master.config import Settings
from customer_master.db.session import Database
from customer_master.webhooks.worker import DeliveryWorker
from tests.conftest import Db, OrgContext, Server
from tests.webhooks.helpers import Receiver, change, create_webhook, feed, wait_until

EXECUTABLE = str(Path(sys.executable).with_name("customer-master"))


@contextmanager
def another_worker(database_url: str, **options: float) -> Iterator[DeliveryWorker]:
    """A delivery worker of its own (own engine, own claim connection, own event loop), as another process has."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    database = Database(database_url, pool_size=4)
    worker = DeliveryWorker(database, **options)  # type: ignore[arg-type]

    async def start() -> None:
        worker.start()

    async def stop() -> None:
        await worker.stop()
        await database.dispose()

    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield worker
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_several_workers_never_send_to_one_endpoint_at_once_and_keep_each_in_order(
    client: httpx.Client, server: Server, org: OrgContext, settings: Settings, receiver: Receiver
) -> None:
    receiver.delay_s = 0.03
    paths = [f"/endpoint-{n}" for n in range(4)]
    for path in paths:
        create_webhook(client, org, receiver.url(path))

    with another_worker(server.database_url, poll_s=0.05), another_worker(server.database_url, poll_s=0.05):
        change(client, org, 6)
        sequences = [event["sequence"] for event in feed(client, org)]
        for path in paths:
            wait_until(lambda path=path: len(receiver.received(path)) >= 6, f"six deliveries to {path}")

    for path in paths:
        assert receiver.max_in_flight[path] == 1, path
        assert receiver.delivered_sequences(path) == sequences, path


def test_a_lost_claim_connection_cancels_the_claims_and_delivery_goes_on(
    client: httpx.Client, db: Db, org: OrgContext, settings: Settings, receiver: Receiver
) -> None:
    gate = receiver.hold["/lost"] = threading.Event()
    create_webhook(client, org, receiver.url("/lost"))
    change(client, org, 2)
    wait_until(lambda: receiver.in_flight["/lost"] == 1, "the first event in flight")

    # Every worker's claim connection ends (as when its server restarts or its process is killed).
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'customer-master webhooks' AND datname = current_database()"
    )
    gate.set()

    sequences = [event["sequence"] for event in feed(client, org)]
    wait_until(lambda: receiver.delivered_sequences("/lost")[-1:] == sequences[-1:], "the last event")
    delivered = receiver.delivered_sequences("/lost")
    assert delivered == sorted(delivered)
    assert set(delivered) == set(sequences)  # the first one perhaps twice: at least once
    assert receiver.max_in_flight["/lost"] == 1


def test_the_deliver_command_runs_until_stopped_and_exits_0_on_sigterm_and_sigint(
    server: Server, tmp_path: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CM_")}
    env |= {"DATABASE_URL": server.database_url, "CM_DATA_DIR": str(tmp_path), "CM_WEBHOOK_ALLOW_LOOPBACK": "1"}
    processes = {  # two at once, as on two machines: they share the endpoints
        stop_signal: subprocess.Popen([EXECUTABLE, "deliver"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for stop_signal in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        for process in processes.values():
            assert process.stdout is not None
            assert b"delivering webhooks" in process.stdout.readline()

        for stop_signal, process in processes.items():
            process.send_signal(stop_signal)

        for process in processes.values():
            assert process.wait(timeout=15) == 0
            assert b"Traceback" not in (process.stderr.read() if process.stderr else b"")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_metrics_count_attempts_and_pending_events(
    client: httpx.Client,
    server: Server,
    org: OrgContext,
    settings: Settings,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings, "webhook_retry_s", (30.0,))
    receiver.status["/metrics"] = 500
    create_webhook(client, org, receiver.url("/metrics"))
    before = _metric(client, 'webhook_deliveries_total{outcome="failed"}')

    with another_worker(server.database_url, pending_every_s=0.05):
        change(client, org, 3)
        wait_until(lambda: receiver.received("/metrics"), "a failed attempt")
        wait_until(lambda: _metric(client, "webhook_pending_events") >= 3, "three pending events")

    assert _metric(client, 'webhook_deliveries_total{outcome="failed"}') >= before + 1
    assert _metric(client, 'webhook_deliveries_total{outcome="delivered"}') >= 0


def _metric(client: httpx.Client, sample: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, flags=re.MULTILINE)
    assert match, f"{sample} is not exposed"
    return float(match.group(1))
