"""Login, the caller, users and API tokens (routes only; the rules are in the service)."""

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response

from customer_master.auth import service
from customer_master.auth.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenOut,
    LoginIn,
    LoginOut,
    MeOut,
    UserCreate,
    UserOut,
    UserPatch,
)
from customer_master.deps import Admin, AnyRole, SessionDep
from customer_master.openapi import error_responses
from customer_master.schemas import Items

router = APIRouter(prefix="/api/v1")


@router.post("/auth/login", tags=["auth"], response_model=LoginOut, responses=error_responses(401, 403, 429))
async def login(request: Request, body: LoginIn) -> LoginOut:
    state = request.app.state
    token = await service.login(state.db, state.jwt_secret, state.token_ttl_s, body.org_slug, body.email, body.password)
    return LoginOut(access_token=token, expires_in=state.token_ttl_s)


@router.get("/me", tags=["auth"], response_model=MeOut)
async def me(principal: AnyRole) -> dict[str, Any]:
    return service.me(principal)


@router.get("/users", tags=["users"], response_model=Items[UserOut])
async def list_users(session: SessionDep, principal: Admin) -> dict[str, Any]:
    return {"items": await service.list_users(session, principal.org_id)}


@router.post("/users", tags=["users"], status_code=201, response_model=UserOut, responses=error_responses(409))
async def create_user(body: UserCreate, session: SessionDep, principal: Admin) -> Any:
    return await service.create_user(session, principal.org_id, body)


@router.patch("/users/{id}", tags=["users"], response_model=UserOut)
async def update_user(id: uuid.UUID, body: UserPatch, session: SessionDep, principal: Admin) -> Any:
    return await service.update_user(session, principal.org_id, id, body)


@router.get("/api-tokens", tags=["api tokens"], response_model=Items[ApiTokenOut])
async def list_api_tokens(session: SessionDep, principal: Admin) -> dict[str, Any]:
    return {"items": await service.list_api_tokens(session, principal.org_id)}


@router.post("/api-tokens", tags=["api tokens"], status_code=201, response_model=ApiTokenCreated)
async def create_api_token(body: ApiTokenCreate, session: SessionDep, principal: Admin) -> ApiTokenCreated:
    row, token = await service.create_api_token(session, principal.org_id, body)
    return ApiTokenCreated.model_validate({**ApiTokenOut.model_validate(row).model_dump(), "token": token})


@router.delete("/api-tokens/{id}", tags=["api tokens"], status_code=204)
async def delete_api_token(id: uuid.UUID, session: SessionDep, principal: Admin) -> Response:
    await service.delete_api_token(session, principal.org_id, id)
    return Response(status_code=204)
