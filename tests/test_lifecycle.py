"""`customer-master serve` stops cleanly, and the embedded PostgreSQL lives as long as its last user.

Run as a user runs it: the real command in a subprocess, on the embedded server (no `DATABASE_URL`) in a
data directory of each test's own (a copy of one initialised here once, which saves initdb per test).
"No PostgreSQL left" is checked right after the last user has exited, without waiting: a stop means the
postmaster has exited. PostgreSQL's processes are found by their working directory (every one of them
runs in the data directory) or by a command line naming it (the postmaster, pg_ctl).
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path

import asyncpg
import httpx
import pytest

from customer_master.db.embedded import DATABASE_NAME, database_url_in
from customer_master.imports.upsert_sql import IMPORT_LOCK_CLASS
from tests.conftest import run_async

EXECUTABLE = str(Path(sys.executable).with_name("customer-master"))
SLUG = "lifecycle"
ADMIN = "admin@lifecycle.example.com"
PASSWORD = "correct-horse-battery"
CSV = b"name,erp_customer_number,default_currency,default_language\nLifecycle GmbH,LC-1,EUR,de-DE\n"

pytestmark = pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="finds processes in /proc (Linux)")


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_") and "DATABASE_URL" not in k}
    return env | {"CM_DATA_DIR": str(data_dir), "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_processes(pgdata: Path) -> list[int]:
    """Live (not zombie) processes of the PostgreSQL in `pgdata`: running in it, or naming it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cwd = os.readlink(entry / "cwd")
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if state != "Z" and (cwd == str(pgdata) or str(pgdata) in args):
            found.append(int(entry.name))
    return found


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])


def kill_postgres(pgdata: Path) -> None:
    """Test teardown: no PostgreSQL of this test outlives it, whatever the test left behind."""
    for _ in range(50):
        pids = postgres_processes(pgdata)
        if not pids:
            return
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


class Serve:
    """One `customer-master serve` process on the data directory, its output in a log file."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"serve-{self.port}.log"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [EXECUTABLE, "serve", "--port", str(self.port), *args],
                env=_env(data_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"serve exited with {self.process.returncode}:\n{self.log()}"
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve did not become ready:\n{self.log()}")

    def wait_exit(self, timeout: float = 15) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve did not exit within {timeout} s:\n{self.log()}") from None

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.wait_exit()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with a migrated database and one org, its PostgreSQL stopped: copied per test."""
    data_dir = tmp_path_factory.mktemp("lifecycle-template") / "data"
    org_create = ["org", "create", "--slug", SLUG, "--name", "Lifecycle", "--admin-email", ADMIN, "--admin-password"]
    result = subprocess.run(
        [EXECUTABLE, *org_create, PASSWORD],
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # the CLI was the only user: its PostgreSQL is gone with it
    assert postgres_processes(data_dir / "pgdata") == []
    # throw-away data: each stop's checkpoint need not wait for the disk
    with (data_dir / "pgdata" / "postgresql.conf").open("a") as conf:
        conf.write("fsync = off\n")
    return data_dir


@pytest.fixture
def data_dir(template: Path, tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "data"
    # `cp -a` keeps the owner: as root, PostgreSQL runs as (and its files belong to) another user
    subprocess.run(["cp", "-a", str(template), str(target)], check=True)
    yield target
    kill_postgres(target / "pgdata")


@pytest.fixture
def serves(data_dir: Path) -> Iterator[list[Serve]]:
    """Start serve processes with `serves.append(Serve(...))`; the test's leftovers are killed."""
    started: list[Serve] = []
    yield started
    for serve in started:
        serve.kill()


def accepts_connections(pgdata: Path) -> bool:
    """Whether the server's postmaster.pid says `ready`: it writes its socket and port into the file while
    it starts, so a file that merely exists may not name them yet."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


def database_url(pgdata: Path) -> str:
    """The customer_master database of the running embedded server, from its postmaster.pid."""
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    return database_url_in(f"postgresql://postgres@/postgres?host={lines[4]}&port={lines[3]}", DATABASE_NAME)


def assert_postgres_runs(pgdata: Path, postmaster: int) -> None:
    assert postmaster_pid(pgdata) == postmaster
    assert postmaster in postgres_processes(pgdata)


def assert_no_postgres(pgdata: Path) -> None:
    assert postgres_processes(pgdata) == [], "PostgreSQL still runs after its last user has exited"
    assert not (pgdata / "postmaster.pid").exists()


@asynccontextmanager
async def import_lock_held(pgdata: Path) -> AsyncIterator[asyncpg.Connection]:
    """Hold the org's import lock (as an import does) until the block ends: an import waits for it."""
    conn = await asyncpg.connect(database_url(pgdata))
    try:
        org = await conn.fetchval("SELECT id::text FROM org WHERE slug = $1", SLUG)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", IMPORT_LOCK_CLASS, org)
            yield conn
    finally:
        await conn.close()


async def until_an_import_waits(conn: asyncpg.Connection, serve: subprocess.Popen[bytes]) -> None:
    waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    while not await conn.fetchval(waiting):
        assert serve.poll() is None
        await asyncio.sleep(0.05)


async def _import_in_flight_at_a_stop_signal(serve: Serve, signum: int, workers: int) -> httpx.Response:
    """POST an import, hold it at its org's import lock, signal serve, then let the import finish."""
    async with (
        httpx.AsyncClient(base_url=serve.base_url, timeout=30) as client,
        httpx.AsyncClient(base_url=serve.base_url, timeout=30) as late_client,
    ):
        login = await client.post("/api/v1/auth/login", json={"org_slug": SLUG, "email": ADMIN, "password": PASSWORD})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        async with import_lock_held(serve.data_dir / "pgdata") as conn:
            files = {"file": ("c.csv", CSV, "text/csv")}
            request = asyncio.create_task(client.post("/api/v1/imports/customers", files=files, headers=headers))
            await until_an_import_waits(conn, serve.process)
            serve.process.send_signal(signum)
            while serve.log().count("Shutting down") < workers:  # every uvicorn server has begun to stop
                assert serve.process.poll() is None, serve.log()
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            # A new connection is not served any more. (With workers the parent holds the listening
            # socket until it exits: the connection waits in the backlog and is then reset.)
            late = asyncio.create_task(late_client.get("/healthz"))
            await asyncio.sleep(0.5)
            assert serve.process.poll() is None, f"serve exited with a request in flight:\n{serve.log()}"
            assert not request.done()
        response = await request  # the lock is free: the import runs to its end
        with pytest.raises(httpx.TransportError):
            await late
    return response


@contextmanager
def slow_shutdown(pgdata: Path, delay_s: float = 2.0) -> Iterator[None]:
    """PostgreSQL's next shutdown takes `delay_s` longer: its checkpointer, which writes the shutdown
    checkpoint, is stopped (SIGSTOP) until that long after the shutdown request. Whoever stops the server
    and does not wait for it to exit leaves its processes running for that long."""
    log = pgdata / "log"
    seen = log.stat().st_size
    (checkpointer,) = [
        p for p in postgres_processes(pgdata) if b"checkpointer" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    done = threading.Event()

    def resume_after_the_shutdown_request() -> None:
        while not done.is_set():
            with log.open("rb") as text:
                text.seek(seen)
                if b"shutdown request" in text.read():
                    break
            time.sleep(0.02)
        done.wait(delay_s)
        os.kill(checkpointer, signal.SIGCONT)

    os.kill(checkpointer, signal.SIGSTOP)
    resumer = threading.Thread(target=resume_after_the_shutdown_request)
    resumer.start()
    try:
        yield
    finally:
        done.set()
        resumer.join()


@pytest.mark.parametrize(
    ("signum", "workers"),
    [(signal.SIGTERM, 1), (signal.SIGINT, 2)],
    ids=["SIGTERM", "SIGINT-2-workers"],
)
def test_a_stop_signal_lets_the_request_in_flight_finish_then_exits_0_and_stops_postgresql(
    data_dir: Path, serves: list[Serve], signum: int, workers: int
) -> None:
    serve = Serve(data_dir, "--workers", str(workers))
    serves.append(serve)
    serve.wait_ready()

    with slow_shutdown(data_dir / "pgdata"):
        response = run_async(_import_in_flight_at_a_stop_signal(serve, signum, workers))

        assert response.status_code == 200, response.text
        assert response.json()["imported"] == 1
        finished = time.monotonic()
        assert serve.wait_exit() == 0, serve.log()
        assert time.monotonic() - finished < 10
        assert_no_postgres(data_dir / "pgdata")  # right away: serve has waited for PostgreSQL to exit


def test_processes_share_one_postgresql_and_the_last_one_to_exit_stops_it(
    data_dir: Path, serves: list[Serve], tmp_path: Path
) -> None:
    pgdata = data_dir / "pgdata"
    serve = Serve(data_dir)
    serves.append(serve)
    serve.wait_ready()
    postmaster = postmaster_pid(pgdata)
    (tmp_path / "c.csv").write_bytes(CSV)

    async def run(*args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            EXECUTABLE, *args, env=_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    async def cli_commands_join_and_serve_exits_first() -> None:
        async with import_lock_held(pgdata) as conn:
            # two CLI commands join the server serve has started: an import (held at the lock) and a migrate
            cli_import = await run("import", str(tmp_path / "c.csv"), "--org", SLUG)
            try:
                migrate = await run("migrate")
                output, _ = await migrate.communicate()
                assert migrate.returncode == 0, output.decode()
                assert_postgres_runs(pgdata, postmaster)  # the migrate has left it running

                await until_an_import_waits(conn, serve.process)
                assert cli_import.returncode is None
                assert serve.stop() == 0, serve.log()
                assert_postgres_runs(pgdata, postmaster)  # serve, which started it, has left it to the import
                assert await conn.fetchval("SELECT 1") == 1
            except BaseException:
                cli_import.kill()
                raise
        # the lock is free: the import ends, and as the last user it stops PostgreSQL
        output, _ = await asyncio.wait_for(cli_import.communicate(), 60)
        assert cli_import.returncode == 0, output.decode()

    run_async(cli_commands_join_and_serve_exits_first())
    assert_no_postgres(pgdata)


def test_after_kill_9_of_serve_the_next_serve_adopts_its_postgresql_and_stops_it(
    data_dir: Path, serves: list[Serve]
) -> None:
    pgdata = data_dir / "pgdata"
    killed = Serve(data_dir)
    serves.append(killed)
    killed.wait_ready()
    orphan = postmaster_pid(pgdata)
    killed.kill()
    assert_postgres_runs(pgdata, orphan)  # nobody stopped it

    serve = Serve(data_dir)
    serves.append(serve)
    serve.wait_ready()
    assert_postgres_runs(pgdata, orphan)  # joined, not restarted
    assert serve.stop() == 0, serve.log()
    assert_no_postgres(pgdata)  # the killed process no longer counted as a user


# A bare user of the embedded server, quicker to start than serve: it starts (or joins) the server, queries
# it, and exits normally; with "stay", it stays until it is killed.
BARE_USER = """
import asyncio, sys, time
from pathlib import Path
import asyncpg
from customer_master.db.embedded import start_embedded_server

async def query(url):
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT 1")
    finally:
        await conn.close()

assert asyncio.run(query(start_embedded_server(Path(sys.argv[1])))) == 1
print("answered", flush=True)
if sys.argv[2:] == ["stay"]:
    time.sleep(120)
"""


def bare_user(data_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", BARE_USER, str(data_dir), *args]
    return subprocess.Popen(command, env=_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _postgresql_killed_too(data_dir: Path) -> subprocess.Popen[bytes] | None:
    """A user and its PostgreSQL killed -9: postmaster.pid names a dead postmaster, its children linger."""
    user = bare_user(data_dir, "stay")
    try:
        assert user.stdout is not None
        assert user.stdout.readline() == b"answered\n"
        os.kill(postmaster_pid(data_dir / "pgdata"), signal.SIGKILL)
    finally:
        user.kill()
        user.wait()
    return None


def _write_postmaster_pid(pgdata: Path, pid: int) -> None:
    lines = [pid, pgdata, int(time.time()), 5432, pgdata, "", "  5432001         0", "ready"]
    (pgdata / "postmaster.pid").write_text("".join(f"{line}\n" for line in lines))


def _pid_reused(data_dir: Path) -> subprocess.Popen[bytes] | None:
    """postmaster.pid names a pid that another process has now: it must not be taken for PostgreSQL."""
    bystander = subprocess.Popen(["sleep", "120"])
    _write_postmaster_pid(data_dir / "pgdata", bystander.pid)
    return bystander


def _zombie(data_dir: Path) -> subprocess.Popen[bytes] | None:
    """postmaster.pid names a postmaster that has died but is not reaped yet (this machine's init reaps
    orphans late): a process of the data directory, killed, that this test does not wait for yet."""
    dead = subprocess.Popen(["sleep", "120"], cwd=data_dir / "pgdata")
    _write_postmaster_pid(data_dir / "pgdata", dead.pid)
    dead.kill()
    return dead


@pytest.mark.parametrize(
    "make_stale", [_postgresql_killed_too, _pid_reused, _zombie], ids=["killed", "pid-reused", "zombie"]
)
def test_a_stale_postmaster_pid_does_not_keep_the_next_process_from_starting(
    data_dir: Path, serves: list[Serve], make_stale: Callable[[Path], subprocess.Popen[bytes] | None]
) -> None:
    pgdata = data_dir / "pgdata"
    other = make_stale(data_dir)
    try:
        assert (pgdata / "postmaster.pid").exists()

        if make_stale is _postgresql_killed_too:  # as after `kill -9` of `make run` and of its PostgreSQL
            serve = Serve(data_dir)
            serves.append(serve)
            serve.wait_ready()
            assert serve.stop(signal.SIGINT) == 0, serve.log()
        else:  # the kinds of stale file, with a user quicker to start than serve
            user = bare_user(data_dir)
            output, _ = user.communicate(timeout=60)
            assert user.returncode == 0, output.decode()
        assert_no_postgres(pgdata)
        if make_stale is _pid_reused:
            assert other is not None
            assert other.poll() is None, "the process that postmaster.pid named was signalled"
    finally:
        if other is not None:
            other.kill()
            other.wait()


async def until_importing(pgdata: Path, importer: subprocess.Popen[bytes]) -> None:
    """Until the import's connection works on its staging table."""
    conn = await asyncpg.connect(database_url(pgdata))
    try:
        staging = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%cm_import_row%' AND pid <> pg_backend_pid()"
        while not await conn.fetchval(staging):
            assert importer.poll() is None, "the import ended before it was seen"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def test_sigterm_to_a_cli_import_rolls_it_back_and_stops_the_postgresql_it_was_the_last_user_of(
    data_dir: Path, tmp_path: Path
) -> None:
    pgdata = data_dir / "pgdata"
    big = tmp_path / "big.csv"
    rows = "".join(f"Big {n} GmbH,BIG-{n},EUR,de-DE\n" for n in range(300_000))
    big.write_text("name,erp_customer_number,default_currency,default_language\n" + rows)
    cli_import = subprocess.Popen(
        [EXECUTABLE, "import", str(big), "--org", SLUG], env=_env(data_dir), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not accepts_connections(pgdata) or not postgres_processes(pgdata):
            assert time.monotonic() < deadline, "the import did not start PostgreSQL"
            time.sleep(0.05)
        run_async(until_importing(pgdata, cli_import))
        assert cli_import.poll() is None, "the import ended before the signal"
        cli_import.send_signal(signal.SIGTERM)
        output, _ = cli_import.communicate(timeout=60)
    finally:
        cli_import.kill()
    assert cli_import.returncode == 128 + signal.SIGTERM, output.decode()
    assert_no_postgres(pgdata)
    export = subprocess.run(
        [EXECUTABLE, "export", "--org", SLUG], env=_env(data_dir), capture_output=True, text=True, timeout=60
    )
    assert export.returncode == 0, export.stderr
    assert "BIG-" not in export.stdout  # nothing of the import was applied
    assert_no_postgres(pgdata)
