"""Helpers for the import and export tests: upload a CSV, read what the database holds."""

import asyncio
import csv
import io
import time
from typing import Any

import asyncpg
import httpx

from customer_master.auth.models import Role
from tests.conftest import Db, OrgContext

HEADER = "name,erp_customer_number,default_currency,default_language"


def post_csv(
    client: httpx.Client,
    org: OrgContext,
    content: str | bytes,
    *,
    dry_run: bool | None = None,
    role: Role = Role.ADMIN,
    filename: str = "customers.csv",
    encoding: str = "utf-8",
) -> httpx.Response:
    body = content.encode(encoding) if isinstance(content, str) else content
    params = {} if dry_run is None else {"dry_run": str(dry_run).lower()}
    return client.post(
        "/api/v1/imports/customers",
        params=params,
        files={"file": (filename, body, "text/csv")},
        headers=org.headers(role),
    )


def import_ok(client: httpx.Client, org: OrgContext, content: str | bytes, **options: Any) -> dict[str, Any]:
    response = post_csv(client, org, content, **options)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def csv_of(rows: list[dict[str, str]], delimiter: str = ",") -> str:
    """A CSV with the union of the rows' keys as header (in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def customer_row(erp: str | None = "4711", **cells: str) -> dict[str, str]:
    row = {
        "name": "Muster GmbH",
        "erp_customer_number": erp or "",
        "default_currency": "EUR",
        "default_language": "de-DE",
    }
    row.update(cells)
    return row


def customer_by_erp(client: httpx.Client, org: OrgContext, erp: str) -> dict[str, Any]:
    listing = client.get("/api/v1/customers", params={"erp_number": erp}, headers=org.headers())
    assert listing.status_code == 200, listing.text
    (item,) = listing.json()["items"]
    response = client.get(f"/api/v1/customers/{item['id']}", headers=org.headers())
    assert response.status_code == 200, response.text
    customer: dict[str, Any] = response.json()
    return customer


def snapshot(db: Db, org: OrgContext) -> list[tuple[Any, ...]]:
    """Every customer and contact row of the org, with timestamps: equal snapshots mean nothing was written."""
    customers = db.fetch(
        "SELECT c::text FROM customer c WHERE org_id = :org ORDER BY id",
        org=org.id,
    )
    contacts = db.fetch(
        "SELECT cc::text FROM customer_contact cc WHERE org_id = :org ORDER BY id",
        org=org.id,
    )
    return [tuple(row) for row in customers] + [tuple(row) for row in contacts]


def count_customers(db: Db, org: OrgContext) -> int:
    (row,) = db.fetch("SELECT count(*) FROM customer WHERE org_id = :org", org=org.id)
    return int(row[0])


def errors_by_row(report: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    for error in report["errors"]:
        found.setdefault(error["row"], []).append(error)
    return found


def warning(report: dict[str, Any], code: str) -> dict[str, Any] | None:
    matches = [w for w in report["warnings"] if w["code"] == code]
    assert len(matches) <= 1, report["warnings"]
    return matches[0] if matches else None


async def blocked_by(monitor: asyncpg.Connection, holder_pid: int, work: "asyncio.Future[Any]") -> list[int]:
    """The backends waiting for a lock that backend `holder_pid` holds, as soon as one waits; [] when `work`
    finishes first (its error raised). No timing is assumed: a backend waits for a lock until it is released.

    `monitor` is a connection outside any transaction, so that each look sees PostgreSQL's locks anew. The
    deadline only ends a test that would otherwise hang.
    """
    deadline = time.monotonic() + 30
    while not work.done():
        waiting = await monitor.fetch(
            "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) ORDER BY pid", holder_pid
        )
        if waiting:
            return [row["pid"] for row in waiting]
        assert time.monotonic() < deadline, f"nothing waited for backend {holder_pid}, and the work did not end"
        await asyncio.sleep(0.005)
    work.result()
    return []
