"""Customer and contact routes: parse, call the service, shape the response."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import AfterValidator, Field

from customer_master import pagination, validation
from customer_master.customers import service
from customer_master.customers.repository import CustomerFilter
from customer_master.customers.schemas import (
    ContactIn,
    ContactOut,
    ContactPatch,
    CustomerCreate,
    CustomerListItem,
    CustomerOut,
    CustomerPatch,
)
from customer_master.deps import Admin, Reader, SessionDep, Writer
from customer_master.idempotency import KEY_MAX_LENGTH, KEY_MIN_LENGTH, run_idempotent
from customer_master.openapi import error_responses
from customer_master.schemas import NO_NUL_PATTERN, Items, Page

router = APIRouter(prefix="/api/v1", tags=["customers"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=KEY_MIN_LENGTH,
        max_length=KEY_MAX_LENGTH,
        description=f"Replays the first response for 24 h ({KEY_MIN_LENGTH}..{KEY_MAX_LENGTH} characters)",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="The `ETag` you last read (a comma-separated list of them, or `*`); any other value names no "
        "current version: 412",
    ),
]
# Declared, and checked by `reject_nul` (its 422 says why).
SearchText = Annotated[
    str | None, AfterValidator(validation.reject_nul), Field(json_schema_extra={"pattern": NO_NUL_PATTERN})
]


def parse_if_match(header: str | None) -> frozenset[str] | None:
    """The ETags an `If-Match` header names (weak ones by their opaque part), or None for no condition.

    `*` asks only that the customer exists, which every route that reads this header checks anyway.
    """
    if header is None:
        return None
    tags = frozenset(tag.strip().removeprefix("W/") for tag in header.split(","))
    return None if "*" in tags else tags


def _document_response(document: service.CustomerDocument, status_code: int = 200) -> Response:
    return Response(
        document.body, status_code=status_code, media_type="application/json", headers={"ETag": document.etag}
    )


@router.get("/customers", response_model=Page[CustomerListItem])
async def list_customers(
    reader: Reader,
    q: Annotated[SearchText, Query(max_length=500, description="Name substring or ERP number prefix")] = None,
    erp_number: Annotated[SearchText, Query(max_length=100, description="Exact ERP number")] = None,
    email: Annotated[SearchText, Query(max_length=320, description="A contact's e-mail")] = None,
    limit: pagination.PageLimit = 50,
    cursor: pagination.KeysetCursor = None,
) -> Response:
    filters = CustomerFilter(q=q, erp_number=erp_number, email=email)
    items, next_cursor = await service.list_customers(
        reader.connection, reader.principal.org_id, filters, limit=limit, cursor=cursor
    )
    # Serialised once, by pydantic: letting FastAPI check the page against the response model again and
    # encode it through json.dumps costs more than the query (a millisecond for 200 items). Same bytes.
    page = Page[CustomerListItem](items=items, next_cursor=next_cursor)
    return Response(page.model_dump_json(), media_type="application/json")


@router.post("/customers", status_code=201, response_model=CustomerOut)
async def create_customer(
    request: Request,
    body: CustomerCreate,
    session: SessionDep,
    principal: Writer,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async def create() -> bytes:
        return (await service.create_customer(session, principal.org_id, body)).body

    return await run_idempotent(session, principal.org_id, request, idempotency_key, 201, create)


@router.get("/customers/{id}", response_model=CustomerOut)
async def get_customer(id: uuid.UUID, reader: Reader) -> Response:
    return _document_response(await service.get_customer(reader.connection, reader.principal.org_id, id))


@router.patch("/customers/{id}", response_model=CustomerOut, responses=error_responses(409, 412))
async def update_customer(
    id: uuid.UUID, body: CustomerPatch, session: SessionDep, principal: Writer, if_match: IfMatch = None
) -> Response:
    return _document_response(
        await service.update_customer(session, principal.org_id, id, body, parse_if_match(if_match))
    )


@router.delete("/customers/{id}", status_code=204, responses=error_responses(412))
async def delete_customer(id: uuid.UUID, session: SessionDep, principal: Admin, if_match: IfMatch = None) -> Response:
    await service.delete_customer(session, principal.org_id, id, parse_if_match(if_match))
    return Response(status_code=204)


@router.get("/customers/{id}/contacts", response_model=Items[ContactOut])
async def list_contacts(id: uuid.UUID, reader: Reader) -> dict[str, Any]:
    return {"items": await service.list_contacts(reader.connection, reader.principal.org_id, id)}


@router.post("/customers/{id}/contacts", status_code=201, response_model=ContactOut)
async def create_contact(
    request: Request,
    id: uuid.UUID,
    body: ContactIn,
    session: SessionDep,
    principal: Writer,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async def create() -> bytes:
        return (await service.create_contact(session, principal.org_id, id, body)).model_dump_json().encode()

    return await run_idempotent(session, principal.org_id, request, idempotency_key, 201, create)


@router.patch("/customers/{id}/contacts/{contact_id}", response_model=ContactOut, responses=error_responses(409))
async def update_contact(
    id: uuid.UUID, contact_id: uuid.UUID, body: ContactPatch, session: SessionDep, principal: Writer
) -> ContactOut:
    return await service.update_contact(session, principal.org_id, id, contact_id, body)


@router.delete("/customers/{id}/contacts/{contact_id}", status_code=204)
async def delete_contact(id: uuid.UUID, contact_id: uuid.UUID, session: SessionDep, principal: Writer) -> Response:
    await service.delete_contact(session, principal.org_id, id, contact_id)
    return Response(status_code=204)
