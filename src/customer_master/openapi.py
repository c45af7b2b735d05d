"""An honest OpenAPI document: every operation declares the errors it can answer, in the one error shape.

The statuses every operation shares follow from what it takes (a token → 401/403, a path id → 404, a body →
413/415/422, …) and are added here, so no route can forget them; a route declares only its own extras
with `responses=error_responses(409)`.
"""

import json
from typing import Any

from fastapi import FastAPI

from customer_master.errors import ERROR_BY_STATUS, ERRORS

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details", "request_id"],
            "properties": {
                "code": {
                    "type": "string",
                    "enum": [error.code for error in ERRORS],
                },
                "message": {"type": "string"},
                "details": {
                    "type": "object",
                    "description": "422: `errors`, every problem found; 409: `field` and `existing_id`",
                    "properties": {
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["field", "reason"],
                                "properties": {
                                    "field": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                                    "reason": {"type": "string"},
                                },
                            },
                        },
                        "field": {"type": "string"},
                        "existing_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    },
                },
                "request_id": {"type": "string", "description": "Also the X-Request-ID response header"},
            },
        }
    },
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """For a route's `responses=`: the errors that only this operation answers."""
    return {status: _response(status) for status in statuses}


def _response(status: int) -> dict[str, Any]:
    error = ERROR_BY_STATUS[status]
    return {"description": f"{error.code}: {error.description}", "content": {"application/json": {"schema": ERROR_REF}}}


def _shared_statuses(operation: dict[str, Any]) -> set[int]:
    parameters = operation.get("parameters", [])
    headers = {parameter["name"].lower() for parameter in parameters if parameter["in"] == "header"}
    statuses = {503}
    if operation.get("security"):
        statuses |= {401, 403}
    if parameters or "requestBody" in operation:
        statuses.add(422)
    if any(parameter["in"] == "path" for parameter in parameters):
        statuses.add(404)
    if "requestBody" in operation:
        statuses |= {413, 415}
    if "if-match" in headers:
        statuses.add(412)
    if "idempotency-key" in headers:
        statuses.add(409)
    return statuses


def declare_errors(document: dict[str, Any]) -> None:
    """Add the shared error responses to every /api/v1 operation (replacing FastAPI's own 422 shape)."""
    document.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, item in document.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            for status in _shared_statuses(operation):
                if str(status) not in responses or status == 422:
                    responses[str(status)] = _response(status)
            operation["responses"] = dict(sorted(responses.items()))
    schemas = document["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        others = {name: schema for name, schema in schemas.items() if name != unused}
        if unused in schemas and f'"#/components/schemas/{unused}"' not in json.dumps([document["paths"], others]):
            del schemas[unused]


def install(app: FastAPI) -> None:
    """Serve the document with its errors declared (built once, on first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            declare_errors(build())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
