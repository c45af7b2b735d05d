"""The HTTP edge as one ASGI middleware: request ids, the JSON media-type rule, metrics."""

import json
import logging
import time
import uuid
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from customer_master.db.faults import is_connection_lost
from customer_master.errors import PayloadTooLarge, UnsupportedMediaType, error_body
from customer_master.metrics import HTTP_DURATION, HTTP_REQUESTS

logger = logging.getLogger("customer_master")

MAX_JSON_BODY_BYTES = 1024 * 1024
# Endpoints whose body is a multipart upload rather than JSON.
MULTIPART_PREFIXES = ("/api/v1/imports/",)


def request_id_from(headers: dict[bytes, bytes]) -> str:
    """The client's X-Request-ID when it is 1..128 printable ASCII characters, else a new one."""
    raw = headers.get(b"x-request-id")
    if raw and len(raw) <= 128 and all(0x20 <= byte <= 0x7E for byte in raw):
        return raw.decode()
    return uuid.uuid4().hex


def is_json_media_type(content_type: bytes) -> bool:
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json" or (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    )


def _matches_a_route(scope: Scope) -> bool:
    """Whether some route takes this path and method (the app sets `scope["app"]` before its middleware)."""
    routes = getattr(scope.get("app"), "routes", ())
    return any(route.matches(scope)[0] is Match.FULL for route in routes)


class HttpEdgeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = request_id_from(headers)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        started_response = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                response_headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-request-id" for name, _ in response_headers):
                    response_headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = response_headers
            await send(message)

        try:
            rejection = self._reject_body(scope, headers)
            if rejection is not None:
                await self._send_error(send_with_request_id, rejection, request_id)
            else:
                await self.app(scope, receive, send_with_request_id)
        except Exception as exc:
            if not started_response or not is_connection_lost(exc):
                raise
            # A streamed response (the export) lost its database after its status was sent: nothing can
            # say so but an incomplete body, which the server makes of a response left unfinished.
            logger.warning("database lost while sending %s %s: response cut short", scope["method"], scope["path"])
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            HTTP_REQUESTS.labels(scope["method"], label, str(status)).inc()
            HTTP_DURATION.labels(scope["method"], label).observe(time.perf_counter() - started)

    @staticmethod
    def _reject_body(scope: Scope, headers: dict[bytes, bytes]) -> UnsupportedMediaType | PayloadTooLarge | None:
        path: str = scope["path"]
        if scope["method"] not in ("POST", "PUT", "PATCH") or not path.startswith("/api/v1/"):
            return None
        if path.startswith(MULTIPART_PREFIXES) or not _matches_a_route(scope):
            return None  # an unknown path or method is the router's 404 / 405, whatever the body
        length = headers.get(b"content-length", b"0")
        has_body = length != b"0" or b"transfer-encoding" in headers  # a POST without one (an action) needs no type
        if has_body and not is_json_media_type(headers.get(b"content-type", b"")):
            return UnsupportedMediaType()
        if length.isdigit() and int(length) > MAX_JSON_BODY_BYTES:
            return PayloadTooLarge(f"A JSON body may be at most {MAX_JSON_BODY_BYTES} bytes")
        return None

    @staticmethod
    async def _send_error(send: Send, error: Any, request_id: str) -> None:
        body = json.dumps(error_body(error.code, error.message, error.details, request_id)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
