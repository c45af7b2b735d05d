"""The record of imports (`import_run`), and the savepoint that makes a dry run leave nothing else behind."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import OrgId, Principal
from customer_master.history.context import Actor
from customer_master.imports.schemas import ImportReport, ImportRunOut


@dataclass(frozen=True)
class ImportSource:
    """Who imports which file, for the `import_run` record and the history of what the import changes."""

    kind: Literal["api", "cli"]
    file_name: str | None = None
    user_id: uuid.UUID | None = None
    user_email: str | None = None
    token_id: uuid.UUID | None = None
    token_name: str | None = None
    actor: Actor = Actor.command("import")
    request_id: str | None = None

    @classmethod
    def from_principal(cls, principal: Principal, file_name: str | None, request_id: str | None) -> "ImportSource":
        return cls(
            kind="api",
            file_name=file_name,
            user_id=principal.user_id,
            user_email=principal.user_email,
            token_id=principal.token_id,
            token_name=principal.token_name,
            actor=Actor.of(principal),
            request_id=request_id,
        )


# --- a dry run: everything inside a savepoint that is rolled back -------------------------------

START_DRY_RUN = "SAVEPOINT cm_import_dry_run"
# Two statements in one round trip.
ROLL_BACK_DRY_RUN = "ROLLBACK TO SAVEPOINT cm_import_dry_run; RELEASE SAVEPOINT cm_import_dry_run"


async def start_dry_run(conn: asyncpg.Connection) -> None:
    await conn.execute(START_DRY_RUN)


async def roll_back_dry_run(conn: asyncpg.Connection) -> None:
    """Undo everything since `start_dry_run`; the work tables go with it."""
    await conn.execute(ROLL_BACK_DRY_RUN)


# --- the record -----------------------------------------------------------------------------------

INSERT_IMPORT_RUN = """
INSERT INTO import_run (id, org_id, source, user_id, user_email, token_id, token_name, file_name, dry_run,
                        encoding, delimiter, row_count, imported, updated, unchanged, failed,
                        contacts_created, contacts_updated, duration_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
"""


async def record_run(
    conn: asyncpg.Connection,
    org_id: OrgId,
    run_id: uuid.UUID,
    source: ImportSource,
    report: ImportReport,
    duration_ms: int,
) -> None:
    """The `/imports` record, under the id the import's history entries name (`import_id`)."""
    await conn.execute(
        INSERT_IMPORT_RUN,
        run_id,
        org_id,
        source.kind,
        source.user_id,
        source.user_email,
        source.token_id,
        source.token_name,
        source.file_name,
        report.dry_run,
        report.encoding,
        report.delimiter,
        report.rows,
        report.imported,
        report.updated,
        report.unchanged,
        report.failed,
        report.contacts_created,
        report.contacts_updated,
        duration_ms,
    )


async def select_import_runs(
    session: AsyncSession, org_id: OrgId, *, limit: int, after: tuple[datetime, uuid.UUID] | None
) -> list[ImportRunOut]:
    """The org's imports, newest first; `after` continues behind the last one of a previous page."""
    params: dict[str, Any] = {"org_id": org_id, "limit": limit}
    condition = ""
    if after is not None:
        condition = "AND (created_at, id) < (:after_created_at, :after_id)"
        params["after_created_at"], params["after_id"] = after
    rows = await session.execute(
        text(
            f"""SELECT id, created_at, source, user_email, token_name, file_name, dry_run, row_count AS rows,
                       imported, updated, unchanged, failed
                  FROM import_run
                 WHERE org_id = :org_id {condition}
                 ORDER BY created_at DESC, id DESC
                 LIMIT :limit"""
        ),
        params,
    )
    return [ImportRunOut.model_validate(row, from_attributes=True) for row in rows]
