"""`customer-master import` and `customer-master export`: the service of API.md §6 on the command line."""

import json
import sys
from pathlib import Path
from typing import Any, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from customer_master.auth import service as auth_service
from customer_master.config import get_settings
from customer_master.db.session import Database
from customer_master.errors import AppError, NotFound
from customer_master.imports import service
from customer_master.imports.export import parse_delimiter, stream_customers_csv
from customer_master.imports.reader import FileRejected
from customer_master.imports.schemas import ImportReport
from customer_master.stopping import run_stoppable

EXIT_OK, EXIT_ROWS_FAILED, EXIT_REJECTED, EXIT_ERROR = 0, 1, 2, 3
ERRORS_SHOWN = 50


def _error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def run_import(database_url: str, path: Path, org_slug: str, *, dry_run: bool, as_json: bool) -> int:
    """Import `path` into the org in one transaction; the exit code of API.md §9."""
    try:
        file = path.open("rb")
    except OSError as exc:
        _error(f"cannot read {path}: {exc.strerror or exc}")
        return EXIT_REJECTED
    with file:
        total = path.stat().st_size
        bar = _progress_bar() if sys.stderr.isatty() else None
        try:
            if bar is not None:
                with bar:
                    task = bar.add_task("Reading", total=total or None, rows=0)

                    def on_progress(rows: int, position: int) -> None:
                        bar.update(task, completed=min(position, total), rows=rows)

                    report = run_stoppable(_import(database_url, file, path.name, org_slug, dry_run, on_progress))
                    bar.update(task, completed=total, description="Done")
            else:
                report = run_stoppable(_import(database_url, file, path.name, org_slug, dry_run, None))
        except (FileRejected, NotFound) as exc:
            _error(_describe(exc))
            return EXIT_REJECTED
        except AppError as exc:  # also the database unavailable
            _error(_describe(exc))
            return EXIT_ERROR
        except OSError as exc:
            _error(f"cannot read {path}: {exc.strerror or exc}")
            return EXIT_ERROR
    if as_json:
        typer.echo(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        _print_summary(report, path, org_slug, sys.stdout)
    return EXIT_ROWS_FAILED if report.failed else EXIT_OK


async def _import(
    database_url: str, file: Any, file_name: str, org_slug: str, dry_run: bool, progress: service.Progress | None
) -> ImportReport:
    database = Database(database_url, pool_size=1)
    try:
        async with database.transaction() as session:
            org_id = await auth_service.org_id_by_slug(session, org_slug)
            return await service.import_customers_csv(
                session,
                org_id,
                file,
                service.ImportSource(kind="cli", file_name=file_name),
                dry_run=dry_run,
                max_line_length=get_settings().import_max_line_length,
                progress=progress,
            )
    finally:
        await database.dispose()


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def _describe(exc: AppError) -> str:
    errors = exc.details.get("errors") or []
    reasons = [e["reason"] for e in errors if e.get("reason") and e["reason"] not in exc.message]
    return exc.message + (f" ({'; '.join(reasons)})" if reasons else "")


def _print_summary(report: ImportReport, path: Path, org_slug: str, out: TextIO) -> None:
    title = f"{'Dry run of ' if report.dry_run else ''}import of {path.name} into {org_slug}"
    delimiter = "tab" if report.delimiter == "\t" else report.delimiter
    lines = [
        title + (" — nothing was written" if report.dry_run else ""),
        f"  rows       {report.rows:>9,}   ({report.encoding}, delimiter {delimiter})",
        f"  imported   {report.imported:>9,}   new customers",
        f"  updated    {report.updated:>9,}   customers",
        f"  unchanged  {report.unchanged:>9,}   customers",
        f"  failed     {report.failed:>9,}   rows",
        f"  contacts   {report.contacts_created:>9,}   created, {report.contacts_updated:,} updated",
    ]
    if report.errors:
        lines.append("Errors:")
        for error in report.errors[:ERRORS_SHOWN]:
            lines.append(f"  row {error.row}, {error.field}: {error.error}")
        if len(report.errors) > ERRORS_SHOWN:
            lines.append(f"  … and {len(report.errors) - ERRORS_SHOWN:,} more (--json lists them all)")
    if report.warnings:
        lines.append("Warnings:")
        lines.extend(f"  {warning.code}: {warning.warning}" for warning in report.warnings)
    out.write("\n".join(lines) + "\n")


def run_export(database_url: str, org_slug: str, output: Path | None, delimiter: str) -> int:
    """Write the org's export to `output` (stdout without it)."""
    chosen = parse_delimiter(delimiter)
    if chosen is None:
        _error("--delimiter must be ',', ';' or a tab")
        return EXIT_REJECTED
    try:
        if output is None:
            run_stoppable(_export(database_url, org_slug, chosen, sys.stdout.buffer))
            sys.stdout.flush()
        else:
            with output.open("wb") as target:
                run_stoppable(_export(database_url, org_slug, chosen, target))
    except NotFound as exc:
        _error(exc.message)
        return EXIT_REJECTED
    except AppError as exc:  # the database is unavailable
        _error(_describe(exc))
        return EXIT_ERROR
    except OSError as exc:  # the output cannot be written
        _error(str(exc))
        return EXIT_ERROR
    return EXIT_OK


async def _export(database_url: str, org_slug: str, delimiter: str, target: Any) -> None:
    database = Database(database_url, pool_size=1)
    try:
        async with database.transaction() as session:
            org_id = await auth_service.org_id_by_slug(session, org_slug)
        async for chunk in stream_customers_csv(database, org_id, delimiter):
            target.write(chunk)
    finally:
        await database.dispose()
