"""Import and export routes (API.md §6): receive the upload, call the service, shape the response."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from customer_master import pagination
from customer_master.deps import SessionDep, Writer
from customer_master.imports import service
from customer_master.imports.export import DELIMITER_NAMES
from customer_master.imports.schemas import ImportReport, ImportRunOut
from customer_master.imports.uploads import csv_download, import_upload, receive_csv_upload
from customer_master.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["import and export"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary", "description": "The CSV file"}},
                }
            }
        },
    }
}


@router.post(
    "/imports/customers",
    response_model=ImportReport,
    openapi_extra=_UPLOAD_BODY,
    summary="Import customers from CSV (upsert by ERP number)",
)
async def import_customers(
    request: Request,
    session: SessionDep,
    principal: Writer,
    dry_run: Annotated[bool, Query(description="Validate and count exactly as a real run, write nothing")] = False,
) -> ImportReport:
    upload = await receive_csv_upload(request)
    try:
        return await import_upload(session, principal, upload, request.state.request_id, dry_run=dry_run)
    finally:
        await upload.close()


@router.get("/imports", response_model=Page[ImportRunOut], summary="The org's imports, newest first")
async def list_imports(
    session: SessionDep,
    principal: Writer,
    limit: pagination.PageLimit = 50,
    cursor: pagination.TimeCursor = None,
) -> dict[str, Any]:
    after = pagination.decode_time_cursor(cursor) if cursor else None
    runs = await service.list_import_runs(session, principal.org_id, limit=limit + 1, after=after)
    next_cursor = (
        pagination.encode_time_cursor(runs[limit - 1].created_at, runs[limit - 1].id) if len(runs) > limit else None
    )
    return {"items": runs[:limit], "next_cursor": next_cursor}


@router.get(
    "/exports/customers.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The org's customers in the import format"}},
    summary="Export customers as CSV (the import format)",
)
async def export_customers(
    request: Request,
    principal: Writer,
    delimiter: Annotated[
        str,
        Query(
            description="`,` (default), `;` or a tab; also by name: `comma`, `semicolon`, `tab`",
            json_schema_extra={"enum": list(DELIMITER_NAMES)},
        ),
    ] = ",",
) -> StreamingResponse:
    return csv_download(request.app.state.db, principal, delimiter)
