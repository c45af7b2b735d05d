"""The FastAPI application: routers, the one error shape, the HTTP edge middleware."""

import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from customer_master import openapi, ops
from customer_master.auth.api import router as auth_router
from customer_master.config import get_settings, resolve_jwt_secret
from customer_master.customers.api import router as customers_router
from customer_master.db.faults import DRIVER_ERRORS, is_connection_lost
from customer_master.db.session import Database
from customer_master.detection.api import router as detection_router
from customer_master.duplicates.api import router as duplicates_router
from customer_master.errors import (
    ERROR_BY_STATUS,
    AppError,
    RateLimited,
    ServiceUnavailable,
    ValidationFailed,
    error_body,
    field_errors,
)
from customer_master.history.api import router as history_router
from customer_master.history.listener import FeedListener
from customer_master.http import HttpEdgeMiddleware
from customer_master.imports.api import router as imports_router
from customer_master.merge.api import router as merge_router
from customer_master.web.routes import router as web_router
from customer_master.webhooks.api import router as webhooks_router
from customer_master.webhooks.worker import DeliveryWorker

logger = logging.getLogger("customer_master")


def create_app(
    database_url: str,
    jwt_secret: str,
    token_ttl_s: int = 3600,
    pool_size: int = 10,
    *,
    deliver_webhooks: bool = True,
) -> FastAPI:
    """`deliver_webhooks`: run the webhook delivery worker in this process too (as `serve` does)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = Database(database_url, pool_size)
        app.state.feed_listener = FeedListener(database_url)
        worker = DeliveryWorker(app.state.db) if deliver_webhooks else None
        if worker is not None:
            worker.start()
        yield
        if worker is not None:
            await worker.stop()
        await app.state.feed_listener.close()
        await app.state.db.dispose()

    app = FastAPI(
        title="Customer Master",
        version="1.0.0",
        description="Customer master data of B2B wholesalers: customers, contacts, import, detection.",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.jwt_secret = jwt_secret
    app.state.token_ttl_s = token_ttl_s
    # In the order requests are matched, each route costs ~10 µs a request that passes it: the most asked
    # for come first. /customers/detect and /customers/merge are no /customers/{id}: before customers.
    app.include_router(detection_router)
    app.include_router(merge_router)
    app.include_router(customers_router)
    app.include_router(auth_router)
    app.include_router(ops.router)
    app.include_router(imports_router)
    app.include_router(history_router)
    app.include_router(webhooks_router)
    app.include_router(duplicates_router)
    app.include_router(web_router)  # the browser UI under /, outside the OpenAPI document
    app.add_middleware(HttpEdgeMiddleware)
    _install_error_handlers(app)
    openapi.install(app)
    return app


def create_app_from_environment() -> FastAPI:
    """The app of one `customer-master serve --workers N` process: `DATABASE_URL` and `CM_JWT_SECRET`."""
    settings = get_settings()
    if not settings.database_url:
        raise RuntimeError("Set DATABASE_URL: `serve --workers` hands every worker the database it resolved")
    return create_app(settings.database_url, resolve_jwt_secret(settings), settings.token_ttl_s, settings.db_pool_size)


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "") or ""


def error_response(
    request: Request,
    code: str,
    status: int,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    request_id = _request_id(request)
    return JSONResponse(
        error_body(code, message, details or {}, request_id),
        status_code=status,
        headers={"X-Request-ID": request_id, **(headers or {})},
    )


# A route that only answers 405 (it keeps a method from reaching a route with a path parameter) allows nothing.
METHOD_NOT_ALLOWED_ROUTE = "method_not_allowed"
ALLOW_CANDIDATES = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _flat_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """The routes in the router's order, those of included routers in their place (FastAPI wraps them; their
    paths already carry the prefix, as none is added at inclusion here)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flat_routes(included.routes)
        else:
            yield route


def allowed_methods(app: FastAPI, scope: Any) -> list[str]:
    """Every method the path takes (RFC 9110 §15.5.6: a 405's `Allow` lists them all): those whose first
    matching route, in the router's order, serves it. Starlette's own `Allow` names only one route's."""

    def served(method: str) -> bool:
        for route in _flat_routes(app.router.routes):
            if route.matches({**scope, "method": method})[0] is Match.FULL:
                return getattr(route, "name", None) != METHOD_NOT_ALLOWED_ROUTE
        return False

    return [method for method in ALLOW_CANDIDATES if served(method)]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else None
        return error_response(request, exc.code, exc.status, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(exc.errors())
        message = "; ".join(f"{e['field'] or 'body'}: {e['reason']}" for e in errors) or "Invalid request"
        return error_response(request, "VALIDATION_ERROR", 422, message, {"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own errors (an unknown route, a method the path does not take) in the one shape; any
        # other client error (a 400 for a body it could not parse) is a 422.
        error = ERROR_BY_STATUS.get(exc.status_code, ValidationFailed if exc.status_code < 500 else AppError)
        code, status = error.code, error.status
        message = {404: "No such route", 405: "This path does not take that method"}.get(
            exc.status_code, str(exc.detail)
        )
        details = {"errors": [{"field": None, "reason": str(exc.detail)}]} if status == 422 else {}
        headers = dict(exc.headers or {})
        if status == 405:
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope))
        return error_response(request, code, status, message, details, headers)

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        return await unexpected_error(request, exc)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        if is_connection_lost(exc):
            error = ServiceUnavailable()
            return error_response(request, error.code, error.status, error.message)
        logger.exception("unhandled error", exc_info=exc)
        return error_response(request, "INTERNAL_ERROR", 500, "Internal error")

    # The driver's own errors outside a request transaction (`Database.transaction` turns a lost
    # connection into `ServiceUnavailable`) arrive unwrapped. Handled here, not by the catch-all above,
    # which re-raises after answering (the server then logs a crash and drops the connection).
    for driver_error in DRIVER_ERRORS:
        app.add_exception_handler(driver_error, unexpected_error)
