"""Uploads and downloads of CSV over HTTP, one implementation for the API and the web UI.

The upload limit (`CM_MAX_UPLOAD_MB`), the multipart reading that stops as soon as a body passes it, the
import of an uploaded file, and the export as a download.
"""

from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime

from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from customer_master.auth.tenancy import Principal
from customer_master.config import get_settings
from customer_master.db.session import Database
from customer_master.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from customer_master.imports import service
from customer_master.imports.export import parse_delimiter, stream_customers_csv
from customer_master.imports.schemas import ImportReport

MIB = 1024 * 1024
# Room for the multipart boundaries and part headers around the file itself.
MULTIPART_OVERHEAD = 64 * 1024


def max_upload_bytes(request: Request) -> int:
    """`CM_MAX_UPLOAD_MB`; an app may carry its own value in `app.state.max_upload_mb`."""
    megabytes = getattr(request.app.state, "max_upload_mb", None) or get_settings().max_upload_mb
    return int(megabytes) * MIB


async def import_upload(
    session: AsyncSession, principal: Principal, upload: UploadFile, request_id: str, *, dry_run: bool
) -> ImportReport:
    """An uploaded CSV into the principal's org: the API's import and the web page's preview and apply."""
    return await service.import_customers_csv(
        session,
        principal.org_id,
        upload.file,
        service.ImportSource.from_principal(principal, upload.filename, request_id),
        dry_run=dry_run,
        max_line_length=get_settings().import_max_line_length,
    )


class BodyTooLarge(MultiPartException):
    """Raised inside the multipart parser, so that it closes its temporary files before giving up."""


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge("too large")
        yield chunk


async def read_multipart(request: Request, limit: int, *, max_part_size: int = MIB) -> FormData:
    """A multipart body (files spooled to temporary files), read as the API and the web page read uploads.

    A body declared or streaming in larger than `limit` plus the form's framing raises `BodyTooLarge` as
    soon as that shows, without reading on; an unreadable one raises `MultiPartException`.
    """
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + MULTIPART_OVERHEAD:
        raise BodyTooLarge("too large")
    stream = _limited(request.stream(), limit + MULTIPART_OVERHEAD)
    parser = MultiPartParser(request.headers, stream, max_files=1, max_fields=20, max_part_size=max_part_size)
    return await parser.parse()


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower() == "multipart/form-data"


def _too_large(megabytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The file is larger than the upload limit of {megabytes} MB (CM_MAX_UPLOAD_MB)")


async def receive_csv_upload(request: Request) -> UploadFile:
    """The multipart field `file`, spooled to a temporary file; too large → 413 without reading on."""
    if not is_multipart(request):
        raise UnsupportedMediaType("Send the CSV as multipart/form-data with the file in the field 'file'")
    limit = max_upload_bytes(request)
    try:
        form = await read_multipart(request, limit)
    except BodyTooLarge:
        raise _too_large(limit // MIB) from None
    except MultiPartException as exc:
        raise ValidationFailed.one("file", f"unreadable multipart body: {exc.message}") from None
    upload = form.get("file")
    for _, value in form.multi_items():
        if isinstance(value, UploadFile) and value is not upload:
            await value.close()
    if not isinstance(upload, UploadFile):
        raise ValidationFailed.one("file", "send the CSV file in the multipart field 'file'")
    if upload.size is not None and upload.size > limit:
        await upload.close()
        raise _too_large(limit // MIB)
    return upload


def csv_download(database: Database, principal: Principal, delimiter: str) -> StreamingResponse:
    """The org's customers as a CSV attachment: the API's export and the web page's download."""
    chosen = parse_delimiter(delimiter)
    if chosen is None:
        raise ValidationFailed.one("delimiter", "use ',', ';' or a tab")
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return StreamingResponse(
        stream_customers_csv(database, principal.org_id, chosen),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="customers-{principal.org_slug}-{stamp}.csv"'},
    )
