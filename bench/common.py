"""What the benchmark scripts share: the served process, the throw-away database's end, and the words
`api.py` and `detect.py` make German company names and addresses of."""

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from customer_master.db.embedded import stop_embedded_server


async def drop_database(admin_url: str, database_name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)')
    finally:
        await conn.close()


async def release_bench_database(admin_url: str, database_name: str, workdir: Path) -> None:
    """The end of a benchmark's database: dropped, and the embedded server (unless `DATABASE_URL`) stopped."""
    await drop_database(admin_url, database_name)
    if not os.environ.get("DATABASE_URL"):
        await asyncio.to_thread(stop_embedded_server, workdir)
    shutil.rmtree(workdir, ignore_errors=True)


class CpuMeter:
    """CPU seconds used by a process and its children (the server's workers, PostgreSQL's backends)."""

    def __init__(self, pid: int | None, children: bool = True) -> None:
        self.pid = pid
        self.children = children

    def seconds(self) -> float | None:
        if self.pid is None:
            return None
        try:
            import psutil
        except ImportError:
            return None
        try:
            root = psutil.Process(self.pid)
            processes = [root, *(root.children(recursive=True) if self.children else [])]
        except psutil.Error:
            return None
        total = 0.0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(database_url: str, log_path: Path, workdir: Path, workers: int = 1) -> Iterator[tuple[int, int]]:
    """`customer-master serve` in its own process, as a user would start it; yields its port and pid."""
    port = free_port()
    executable = Path(sys.executable).parent / "customer-master"
    command = [str(executable), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    env = {
        "DATABASE_URL": database_url,
        "CM_JWT_SECRET": "bench-" + secrets.token_hex(16),
        "CM_DATA_DIR": str(workdir / "cm"),
    }
    with running_process(command, env, log_path, workers) as pid:
        yield port, pid


@contextlib.contextmanager
def running_process(command: list[str], env: dict[str, str], log_path: Path, workers: int) -> Iterator[int]:
    """`command` (a uvicorn server) with `env` added to ours, until each of its workers has started; yields its pid."""
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
        try:
            deadline = time.monotonic() + 120
            while log_path.read_text().count("Application startup complete") < workers:
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited with {process.returncode}; see {log_path}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start; see {log_path}")
                time.sleep(0.2)
            print(f"server: {' '.join(command[1:])} (pid {process.pid})", flush=True)
            yield process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- seed vocabulary ---------------------------------------------------------------------------

SURNAMES = [
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
    "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann",
    "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner", "Schmitz", "Krause", "Meier",
    "Lehmann", "Schmid", "Schulze", "Maier", "Köhler", "Herrmann", "König", "Walter", "Mayer", "Huber",
    "Kaiser", "Fuchs", "Peters", "Lang", "Scholz", "Möller", "Weiß", "Jung", "Hahn", "Schubert",
    "Vogel", "Friedrich", "Keller", "Günther", "Frank", "Berger", "Winkler", "Roth", "Beck", "Lorenz",
    "Baumann", "Franke", "Albrecht", "Schuster", "Simon", "Ludwig", "Böhm", "Winter", "Kraus", "Martin",
    "Schumacher", "Krämer", "Vogt", "Stein", "Jäger", "Otto", "Sommer", "Groß", "Seidel", "Heinrich",
    "Brandt", "Haas", "Schreiber", "Graf", "Schulte", "Dietrich", "Ziegler", "Kuhn", "Kühn", "Pohl",
    "Engel", "Horn", "Busch", "Bergmann", "Thomas", "Voigt", "Sauer", "Arnold", "Wolff", "Pfeiffer",
]  # fmt: skip
TRADES = [
    "Bäckerei", "Metallbau", "Elektrotechnik", "Sanitär- und Heizungstechnik", "Holzhandel", "Getränkehandel",
    "Baustoffe", "Landtechnik", "Autohaus", "Druckerei", "Gärtnerei", "Fleischerei", "Schreinerei",
    "Großhandel", "Büromöbel", "Stahlbau", "Lebensmittel", "Fliesenfachhandel", "Werkzeugbau",
    "Kälte- und Klimatechnik", "Dachdeckerei", "Malerbetrieb", "Spedition", "Verpackungen", "Brauerei",
    "Apotheke", "Möbelhaus", "Zweiradhandel", "Gebäudereinigung", "Industriebedarf",
]  # fmt: skip
LEGAL_FORMS = ["GmbH", "GmbH & Co. KG", "AG", "KG", "e.K.", "OHG", "UG (haftungsbeschränkt)", "GmbH", "GmbH"]
STREETS = ["Hauptstraße", "Schillerstraße", "Goethestraße", "Bahnhofstraße", "Gärtnerweg", "Mühlenstraße"]
