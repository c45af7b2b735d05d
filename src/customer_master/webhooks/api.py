"""Webhook routes (API.md §11 "Push"): ADMIN only; another org's webhook is a 404."""

import uuid

from fastapi import APIRouter, Response

from customer_master import pagination
from customer_master.deps import Admin, SessionDep
from customer_master.openapi import error_responses
from customer_master.schemas import Items, Page
from customer_master.webhooks import service
from customer_master.webhooks.schemas import (
    Delivery,
    ReplayAccepted,
    ReplayRequest,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookPatch,
    WebhookSecret,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


@router.post("", status_code=201, response_model=WebhookCreated, summary="Add a webhook endpoint (secret shown once)")
async def create_webhook(session: SessionDep, principal: Admin, body: WebhookCreate) -> WebhookCreated:
    return await service.create_webhook(session, principal.org_id, body)


@router.get("", response_model=Items[Webhook], summary="The org's webhook endpoints")
async def list_webhooks(session: SessionDep, principal: Admin) -> dict[str, object]:
    return {"items": await service.list_webhooks(session, principal.org_id)}


@router.get("/{id}", response_model=Webhook, summary="A webhook endpoint")
async def get_webhook(session: SessionDep, principal: Admin, id: uuid.UUID) -> Webhook:
    return await service.get_webhook(session, principal.org_id, id)


@router.patch("/{id}", response_model=Webhook, summary="Change a webhook endpoint; `status: ACTIVE` resumes it")
async def update_webhook(session: SessionDep, principal: Admin, id: uuid.UUID, body: WebhookPatch) -> Webhook:
    return await service.update_webhook(session, principal.org_id, id, body)


@router.delete("/{id}", status_code=204, response_class=Response, summary="Delete a webhook endpoint")
async def delete_webhook(session: SessionDep, principal: Admin, id: uuid.UUID) -> Response:
    await service.delete_webhook(session, principal.org_id, id)
    return Response(status_code=204)


@router.post("/{id}/rotate-secret", response_model=WebhookSecret, summary="A new signing secret (shown once)")
async def rotate_secret(session: SessionDep, principal: Admin, id: uuid.UUID) -> WebhookSecret:
    return await service.rotate_secret(session, principal.org_id, id)


@router.get("/{id}/deliveries", response_model=Page[Delivery], summary="The endpoint's attempts, newest first")
async def list_deliveries(
    session: SessionDep,
    principal: Admin,
    id: uuid.UUID,
    limit: pagination.PageLimit = 50,
    cursor: pagination.TimeCursor = None,
) -> dict[str, object]:
    items, next_cursor = await service.list_deliveries(session, principal.org_id, id, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.post(
    "/{id}/replay",
    status_code=202,
    response_model=ReplayAccepted,
    responses=error_responses(410),
    summary="Send every event after a cursor again, in order, before new ones",
)
async def replay(session: SessionDep, principal: Admin, id: uuid.UUID, body: ReplayRequest) -> ReplayAccepted:
    return await service.replay(session, principal.org_id, id, body.after)
