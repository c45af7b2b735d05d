"""A client that went away stops its import within seconds, and the org's import lock is free again (issue 9).

Killed in the middle of an import (`kill -9` of `customer-master import`, or of `serve` during an API
import), a client leaves its PostgreSQL backend behind. An idle backend sees the closed socket at once; one
in the middle of a statement sees it only when the statement ends — for a long import that was minutes, all
the while holding the org's import lock, so the next import of the org waited. The connections' setting
`client_connection_check_interval` (db/session.py) has PostgreSQL look at the socket every 2 s while a
statement works or waits, end the backend and roll its transaction back.

The killed import is held in the middle of a statement deterministically: the test inserts, and does not
commit, a customer with the file's first ERP number (as an API request in flight would), so the import's
customer insert waits for it — holding the org's import lock. PostgreSQL checks the client the same way
while a statement waits as while it works.
"""

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from customer_master.imports.upsert_sql import IMPORT_LOCK_CLASS
from tests.conftest import Db, OrgContext
from tests.imports.helpers import HEADER, count_customers, import_ok

EXECUTABLE = str(Path(sys.executable).with_name("customer-master"))
IN_FLIGHT_ERP = "GONE-1"
CSV = (
    "name,erp_customer_number,default_currency,default_language,contact_email\n"
    f"Weg GmbH,{IN_FLIGHT_ERP},EUR,de-DE,einkauf@weg.example.com\n"
    "Fort KG,GONE-2,EUR,de-DE,einkauf@fort.example.com\n"
)
# The backend checks its client every 2 s; ending it and rolling back takes a moment more.
GONE_WITHIN_S = 8

# The backend of an import that holds the org's import lock and waits in the middle of a statement.
WAITING_IMPORT = """
SELECT a.pid
  FROM pg_stat_activity a
  JOIN pg_locks l ON l.pid = a.pid
 WHERE a.datname = current_database() AND a.application_name = 'customer-master'
   AND a.state = 'active' AND a.wait_event_type = 'Lock'
   AND l.locktype = 'advisory' AND l.granted
   AND l.classid = CAST(:lock_class AS oid) AND l.objid = CAST(hashtext(:org) AS oid) AND l.objsubid = 2
"""
LOCK_HOLDERS = """
SELECT pid FROM pg_locks
 WHERE locktype = 'advisory' AND classid = CAST(:lock_class AS oid) AND objid = CAST(hashtext(:org) AS oid)
   AND objsubid = 2
"""


def _env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CM_") and "DATABASE_URL" not in key}
    return env | {
        "DATABASE_URL": database_url,
        "CM_JWT_SECRET": "client-gone-" + secrets.token_hex(8),
        "CM_DATA_DIR": str(tmp_path / "cm"),
        "NO_COLOR": "1",
    }


@contextmanager
def customer_insert_in_flight(database_url: str, db: Db, org: OrgContext) -> Iterator[None]:
    """An uncommitted customer with IN_FLIGHT_ERP until the block ends: an import's insert of it waits."""
    conn: asyncpg.Connection = db.run(asyncpg.connect(database_url))
    try:
        db.run(conn.execute("BEGIN"))
        db.run(
            conn.execute(
                "INSERT INTO customer (org_id, name, erp_customer_number, default_currency, default_language)"
                " VALUES ($1, 'In flight', $2, 'EUR', 'de-DE')",
                org.id,
                IN_FLIGHT_ERP,
            )
        )
        yield
    finally:
        db.run(conn.close())  # rolled back


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> float:
    """Seconds until `condition()` is true; fails after `timeout_s`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def waiting_import_backend(db: Db, org: OrgContext, client_process: subprocess.Popen[bytes], log: Path) -> int:
    """The backend of the client's import once it holds the org's import lock and waits mid-statement."""
    found: list[int] = []

    def waiting() -> bool:
        assert client_process.poll() is None, f"the client exited:\n{log.read_text()}"
        found.extend(row[0] for row in db.fetch(WAITING_IMPORT, lock_class=IMPORT_LOCK_CLASS, org=str(org.id)))
        return bool(found)

    wait_for(waiting, 60, "the import holds the org's import lock and waits")
    assert len(found) == 1, found
    return found[0]


def assert_backend_ends_and_frees_the_import_lock(db: Db, org: OrgContext, pid: int) -> None:
    def gone() -> bool:
        alive = db.fetch("SELECT 1 FROM pg_stat_activity WHERE pid = :pid", pid=pid)
        holders = db.fetch(LOCK_HOLDERS, lock_class=IMPORT_LOCK_CLASS, org=str(org.id))
        return not alive and not holders

    wait_for(gone, GONE_WITHIN_S, f"the backend {pid} of the killed client ends and frees the org's import lock")


def assert_the_next_import_runs_at_once(client: httpx.Client, db: Db, org: OrgContext) -> None:
    """While the request in flight still waits: the import lock is free, and the killed import left nothing."""
    started = time.monotonic()
    report = import_ok(client, org, f"{HEADER}\nDanach AG,NEXT-1,EUR,de-DE\n")
    assert time.monotonic() - started < 10
    assert (report["imported"], report["failed"]) == (1, 0)
    assert count_customers(db, org) == 1


def test_a_killed_cli_import_ends_its_backend_and_frees_the_org_import_lock(
    database_url: str, tmp_path: Path, db: Db, client: httpx.Client, org: OrgContext
) -> None:
    path = tmp_path / "kunden.csv"
    path.write_text(CSV)
    log = tmp_path / "import.log"
    with customer_insert_in_flight(database_url, db, org), log.open("w") as output:
        process = subprocess.Popen(
            [EXECUTABLE, "import", str(path), "--org", org.slug],
            env=_env(database_url, tmp_path),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            pid = waiting_import_backend(db, org, process, log)
        finally:
            process.kill()
            process.wait()

        assert_backend_ends_and_frees_the_import_lock(db, org, pid)
        assert_the_next_import_runs_at_once(client, db, org)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_server_killed_during_an_api_import_leaves_no_backend_holding_the_org_import_lock(
    database_url: str, tmp_path: Path, db: Db, client: httpx.Client, org: OrgContext
) -> None:
    base_url = f"http://127.0.0.1:{_free_port()}"
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        serve = subprocess.Popen(
            [EXECUTABLE, "serve", "--port", base_url.rsplit(":", 1)[1]],
            env=_env(database_url, tmp_path),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            assert serve.poll() is None, f"serve exited:\n{log.read_text()}"
            try:
                return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 60, "serve is ready")
        with customer_insert_in_flight(database_url, db, org), ThreadPoolExecutor(1) as pool:
            request = pool.submit(
                httpx.post,
                f"{base_url}/api/v1/imports/customers",
                files={"file": ("kunden.csv", CSV.encode(), "text/csv")},
                headers=org.headers(),
                timeout=60,
            )
            try:
                pid = waiting_import_backend(db, org, serve, log)
            finally:
                serve.kill()
                serve.wait()
            with pytest.raises(httpx.TransportError):
                request.result(timeout=30)

            assert_backend_ends_and_frees_the_import_lock(db, org, pid)
            assert_the_next_import_runs_at_once(client, db, org)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
