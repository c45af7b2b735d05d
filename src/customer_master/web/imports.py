"""Import and export: choose a CSV, read its dry-run report, apply it, download the failing rows.

Stateless like the API: the file stays chosen in the page's file input, so "apply" and "download the
failing rows" send it again. "Apply" carries the SHA-256 of the file that was checked; a different file
is checked again instead of being applied unseen.

The three posts read their body themselves (`_upload`): once, cut off at the API's upload limit while it
streams in, and the CSRF token is checked there (the `CsrfChecked` dependency would spool all of it first).
"""

import csv
import hashlib
import io
import json
from pathlib import PurePath
from typing import Any, BinaryIO

from anyio import to_thread
from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException

from customer_master.auth.tenancy import Principal
from customer_master.config import get_settings
from customer_master.deps import DatabaseDep, SessionDep
from customer_master.errors import AppError, PayloadTooLarge, ValidationFailed
from customer_master.imports import service
from customer_master.imports.reader import CsvReader, ensure_field_size_limit
from customer_master.imports.schemas import ImportReport
from customer_master.imports.uploads import (
    MIB,
    BodyTooLarge,
    csv_download,
    import_upload,
    is_multipart,
    max_upload_bytes,
    read_multipart,
)
from customer_master.web.core import (
    CSRF_HEADER,
    MAX_FORM_FIELD_BYTES,
    WebRoute,
    form_text,
    is_cross_site,
    is_htmx,
    render,
    verify_csrf,
)
from customer_master.web.deps import WebWriter
from customer_master.web.i18n import gettext_for

router = APIRouter(route_class=WebRoute)
HISTORY_SIZE = 20
ERRORS_SHOWN = 1000
ERROR_COLUMN = "import_error"


async def _respond(
    request: Request, session: AsyncSession, principal: Principal, status: int = 200, **context: Any
) -> Response:
    """htmx: the report, and the history out of band; a plain form: the whole page."""
    history = list(await service.list_import_runs(session, principal.org_id, limit=HISTORY_SIZE))
    context = {"history": history, "errors_shown": ERRORS_SHOWN, **context}
    context["oob_history"] = is_htmx(request)
    template = "_import_report.html" if is_htmx(request) else "import.html"
    return render(request, template, context, status=status)


@router.get("/import")
async def import_page(request: Request, session: SessionDep, principal: WebWriter) -> Response:
    return await _respond(request, session, principal)


async def _upload(request: Request) -> tuple[FormData, UploadFile]:
    """The multipart form with its file, then its CSRF token (these routes read their body themselves).

    Read once, and as the API reads its upload: a body declared or streaming in larger than
    `CM_MAX_UPLOAD_MB` (plus the form's framing) is refused as soon as that shows, not spooled first.
    """
    _ = gettext_for(request)
    limit = max_upload_bytes(request)
    too_large = PayloadTooLarge(
        _("The file is larger than the upload limit of %(megabytes)s MB.") % {"megabytes": limit // MIB}
    )
    if is_cross_site(request) or request.headers.get(CSRF_HEADER) is not None:
        verify_csrf(request)  # what can be checked before the body is read
    if not is_multipart(request):
        raise ValidationFailed.one("file", _("Choose a CSV file first."))
    try:
        form = await read_multipart(request, limit, max_part_size=MAX_FORM_FIELD_BYTES)
    except BodyTooLarge:
        raise too_large from None
    except MultiPartException as exc:
        unreadable = _("The file could not be read: %(reason)s") % {"reason": exc.message}
        raise ValidationFailed.one("file", unreadable) from None
    try:
        verify_csrf(request, form)
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise ValidationFailed.one("file", _("Choose a CSV file first."))
        if upload.size is not None and upload.size > limit:
            raise too_large
    except AppError:
        await form.close()
        raise
    return form, upload


def _sha256(binary: BinaryIO) -> str:
    binary.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: binary.read(1024 * 1024), b""):
        digest.update(chunk)
    binary.seek(0)
    return digest.hexdigest()


def _failed_rows(report: ImportReport) -> str:
    """Each failing row with its reasons, for the download (kept in the page, like the file)."""
    reasons: dict[int, list[str]] = {}
    for error in report.errors:
        reasons.setdefault(error.row, []).append(f"{error.field}: {error.error}" if error.field else error.error)
    return json.dumps({str(row): "; ".join(messages) for row, messages in reasons.items()}, ensure_ascii=False)


async def _import(request: Request, session: AsyncSession, principal: Principal, *, apply: bool) -> Response:
    _ = gettext_for(request)
    try:
        form, upload = await _upload(request)
    except (PayloadTooLarge, ValidationFailed) as exc:  # shown in the page; a forged form gets the error page
        return await _respond(request, session, principal, exc.status, rejected=exc.message)
    try:
        sha256 = await to_thread.run_sync(_sha256, upload.file)
        changed = apply and form_text(form, "preview_sha256") != sha256
        dry_run = not apply or changed
        try:
            async with session.begin_nested():  # refused: nothing of the file written, the report page again
                report = await import_upload(session, principal, upload, request.state.request_id, dry_run=dry_run)
        except AppError as exc:
            rejected = {"rejected": exc.message, "file_name": upload.filename}
            return await _respond(request, session, principal, exc.status, **rejected)
    finally:
        await upload.close()
    notice = _("The file changed since it was checked: here is the check of this file.") if changed else None
    context: dict[str, Any] = {
        "report": report,
        "file_name": upload.filename,
        "sha256": sha256,
        "failed_rows": _failed_rows(report),
        "notice": notice,
    }
    return await _respond(request, session, principal, **context)


@router.post("/import/preview")
async def preview_import(request: Request, session: SessionDep, principal: WebWriter) -> Response:
    """A dry run: the report exactly as the real import would give it, nothing written."""
    return await _import(request, session, principal, apply=False)


@router.post("/import/apply")
async def apply_import(request: Request, session: SessionDep, principal: WebWriter) -> Response:
    return await _import(request, session, principal, apply=True)


def failing_rows_csv(binary: BinaryIO, reasons: dict[int, str], max_line_length: int) -> bytes:
    """The header and the failing records as the file had them, plus a column with the reasons.

    UTF-8 with a BOM (so spreadsheet programs read it right), in the file's own delimiter; the import
    ignores the extra column, so the fixed file can be imported as it is.
    """
    ensure_field_size_limit(max_line_length)
    reader = CsvReader(binary, max_line_length=max_line_length)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=reader.delimiter, lineterminator="\r\n")
    width = len(reader.header)
    writer.writerow([*reader.header, ERROR_COLUMN])
    for line, fields in reader.records():
        if line in reasons:
            writer.writerow([*fields, *[""] * (width - len(fields)), reasons[line]])
    return b"\xef\xbb\xbf" + out.getvalue().encode()


@router.post("/import/failed-rows")
async def download_failed_rows(request: Request, principal: WebWriter) -> Response:
    form, upload = await _upload(request)
    try:
        listed = json.loads(form_text(form, "failed_rows") or "{}")
        reasons = {int(row): str(reason) for row, reason in listed.items()}
    except (ValueError, AttributeError):
        raise ValidationFailed.one("failed_rows", "not the list of failing rows this page made") from None
    try:
        body = await to_thread.run_sync(failing_rows_csv, upload.file, reasons, get_settings().import_max_line_length)
    finally:
        await upload.close()
    stem = PurePath(upload.filename or "import").stem
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{_safe_name(stem)}-failed-rows.csv"'},
    )


def _safe_name(stem: str) -> str:
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in stem)[:100] or "import"


@router.get("/export/customers.csv")
async def export_customers(database: DatabaseDep, principal: WebWriter, delimiter: str = ",") -> Response:
    """The API's export (every customer, the import format) as a download.

    It streams on a connection of its own after the response has begun, when the request's session is over.
    """
    return csv_download(database, principal, delimiter)
