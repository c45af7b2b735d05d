"""An honest OpenAPI document: every operation declares the errors it can answer, in the one error shape.

The statuses every operation shares follow from what it takes (a token → 401/403, a path id → 404, a body →
413/415/422, …) and are added here, so no route can forget them; a route declares only its own extras
with `responses=error_responses(409)`.

Links (OpenAPI 3.1 §4.8.20) lead a client, and schemathesis' stateful tests, from an answer to what it names:
a created object's `id` to the operations on it (`POST /webhooks` → `/webhooks/{id}`…, `POST
/customers/{id}/contacts` → `…/contacts/{contact_id}`), and a field `<name>_id` of an answer to the
operations with a path parameter of that name (`merge_id` → `POST /merges/{merge_id}/undo`), the first item of
a page to the operations that read it, and the links in `BODY_LINKS` that no rule derives.
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


# Two customers of a page, or a duplicate pair, are what a merge and a dismissal take: (method, path) of the
# answer → link name → (method, path) of the operation and its request body.
_PAIR = ("$response.body#/items/0/id", "$response.body#/items/1/id")
_DUPLICATE_PAIR = ("$response.body#/items/0/customers/0/id", "$response.body#/items/0/customers/1/id")
BODY_LINKS: dict[tuple[str, str], dict[str, tuple[str, str, dict[str, Any]]]] = {
    ("get", "/api/v1/customers"): {
        "MergeTheFirstTwo": (
            "post",
            "/api/v1/customers/merge",
            {"survivor_id": _PAIR[0], "merged_ids": [_PAIR[1]]},
        ),
        "DismissTheFirstTwo": ("post", "/api/v1/duplicates/dismiss", {"customer_ids": list(_PAIR)}),
    },
    ("get", "/api/v1/duplicates"): {
        "MergeTheFirstPair": (
            "post",
            "/api/v1/customers/merge",
            {"survivor_id": _DUPLICATE_PAIR[0], "merged_ids": [_DUPLICATE_PAIR[1]]},
        ),
        "DismissTheFirstPair": ("post", "/api/v1/duplicates/dismiss", {"customer_ids": list(_DUPLICATE_PAIR)}),
    },
}


def _body_links(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    links = {}
    for name, (target_method, target_path, body) in BODY_LINKS.get((method, path), {}).items():
        target = document["paths"].get(target_path, {}).get(target_method)
        if target is not None:
            links[name] = {"operationId": target["operationId"], "requestBody": body}
    return links


def _response_properties(document: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = document["components"]["schemas"][ref.rpartition("/")[2]]
    properties: dict[str, Any] = schema.get("properties", {})
    return properties


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _links_from(document: dict[str, Any], path: str, method: str, properties: dict[str, Any]) -> dict[str, Any]:
    """The links of one success answer with these top-level properties (see the module's docstring)."""
    links: dict[str, Any] = {}
    own = _path_parameters(path)
    for target_path, item in document["paths"].items():
        target_parameters = _path_parameters(target_path)
        parameters: dict[str, str] | None = None
        if method == "post" and "id" in properties and target_path.startswith(path + "/{"):
            created = target_parameters[len(own)]
            if target_parameters[: len(own)] == own and len(target_parameters) == len(own) + 1:
                parameters = {name: f"$request.path.{name}" for name in own} | {created: "$response.body#/id"}
        if (
            method == "get"
            and "items" in properties
            and target_path.startswith(path + "/{")
            and target_parameters == [*own, target_parameters[-1]]
        ):
            first_item = {name: f"$request.path.{name}" for name in own} | {
                target_parameters[-1]: "$response.body#/items/0/id"
            }
            for operation in [item["get"]] if "get" in item else []:
                links[operation["operationId"]] = {"operationId": operation["operationId"], "parameters": first_item}
            continue
        named = [name for name in target_parameters if name.endswith("_id") and name in properties]
        if parameters is None and named and len(named) == len(target_parameters):
            parameters = {name: f"$response.body#/{name}" for name in named}
        if parameters is None:
            continue
        for operation in item.values():
            links[operation["operationId"]] = {"operationId": operation["operationId"], "parameters": parameters}
    return links


def declare_links(document: dict[str, Any]) -> None:
    """Add the links of every /api/v1 operation's success answers (to those a route declares itself)."""
    for path, item in document.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in item.items():
            for status, response in operation.get("responses", {}).items():
                if status.startswith("2"):
                    links = _links_from(document, path, method, _response_properties(document, response))
                    links |= _body_links(document, method, path)
                    if links:
                        response["links"] = {**response.get("links", {}), **links}


def install(app: FastAPI) -> None:
    """Serve the document with its errors declared (built once, on first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            declare_errors(document)
            declare_links(document)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
