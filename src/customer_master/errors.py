"""The one error shape of the API: every failure is an `AppError` with its code and HTTP status."""

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

# Where FastAPI found a value that failed: the first element of a request error's location.
_REQUEST_PARTS = ("body", "query", "path", "header")


class AppError(Exception):
    code = "INTERNAL_ERROR"
    status = 500
    message = "Internal error"
    description = "a bug; never reachable from input"  # what the status means, for the OpenAPI document

    def __init__(self, message: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details or {}


class AuthRequired(AppError):
    code, status, message = "AUTH_REQUIRED", 401, "Authentication required"
    description = "no, invalid or expired token"


class Forbidden(AppError):
    code, status, message = "FORBIDDEN", 403, "Your role may not do this"
    description = "the role may not do this, or the user is disabled"


class NotFound(AppError):
    code, status, message = "NOT_FOUND", 404, "Not found"
    description = "no such object in the caller's org"


class MethodNotAllowed(AppError):
    code, status, message = "METHOD_NOT_ALLOWED", 405, "Method not allowed"
    description = "the path exists, the method does not"


class Conflict(AppError):
    code, status, message = "CONFLICT", 409, "Conflict"
    description = "a unique rule is broken; `details` names the holder"

    def __init__(self, message: str, field: str, existing_id: Any) -> None:
        existing = str(existing_id) if existing_id is not None else None
        super().__init__(message, {"field": field, "existing_id": existing})


class PreconditionFailed(AppError):
    code, status, message = "PRECONDITION_FAILED", 412, "The resource has changed since you read it"
    description = "`If-Match` names a version that is no longer current"


class Gone(AppError):
    code, status, message = "GONE", 410, "This cursor is older than the event feed keeps"
    description = "an event cursor older than the feed keeps (`CM_EVENT_RETENTION_S`)"


class PayloadTooLarge(AppError):
    code, status, message = "PAYLOAD_TOO_LARGE", 413, "Payload too large"
    description = "the body is too large"


class UnsupportedMediaType(AppError):
    code, status, message = "UNSUPPORTED_MEDIA_TYPE", 415, "Send the body as application/json"
    description = "the body has the wrong media type"


class ValidationFailed(AppError):
    code, status, message = "VALIDATION_ERROR", 422, "Validation failed"
    description = "bad body, query or path parameter; `details.errors` lists every problem"

    def __init__(self, errors: list[dict[str, Any]], message: str | None = None) -> None:
        super().__init__(message or self.message, {"errors": errors})

    @classmethod
    def one(cls, field: str | None, reason: str) -> "ValidationFailed":
        return cls([{"field": field, "reason": reason}], message=reason)

    @classmethod
    def of(cls, exc: ValidationError) -> "ValidationFailed":
        return cls(field_errors(exc.errors()))


def field_of(error: Mapping[str, Any]) -> str | None:
    """Where a pydantic error is, as the API names it: `("body", "billing_address", "country")` (a request
    error) or `("billing_address", "country")` (a model's) → `billing_address.country`; the whole body → None."""
    loc = list(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        return None
    if loc and loc[0] in _REQUEST_PARTS:
        loc = loc[1:]
    if loc and loc[-1] == "[key]":  # a refused key of an object (`pick.contacts`)
        loc = loc[:-1]
    return ".".join(str(part) for part in loc) or None


def reason_of(error: Mapping[str, Any]) -> str:
    """What is wrong, in the API's words (pydantic's without its "Value error, " prefix)."""
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "json_invalid":
        return f"malformed JSON: {error.get('ctx', {}).get('error', message)}"
    if error.get("type") == "extra_forbidden":
        return "unknown field"
    return message.removeprefix("Value error, ")


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """pydantic's errors as the `field`/`reason` pairs of a 422's `details.errors`."""
    return [{"field": field_of(error), "reason": reason_of(error)} for error in errors]


class RateLimited(AppError):
    code, status, message = "RATE_LIMITED", 429, "Too many failed logins; try again later"
    description = "too many failed logins; see `Retry-After`"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__()
        self.retry_after_s = retry_after_s


class ServiceUnavailable(AppError):
    code, status, message = "SERVICE_UNAVAILABLE", 503, "The database is unavailable; retry later"
    description = "the database is unavailable; nothing was applied, retry later"


# Every error the API answers, one class per code (API.md §1).
ERRORS: tuple[type[AppError], ...] = (
    AuthRequired,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PreconditionFailed,
    Gone,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    RateLimited,
    AppError,
    ServiceUnavailable,
)
ERROR_BY_STATUS = {error.status: error for error in ERRORS}


def error_body(code: str, message: str, details: dict[str, Any], request_id: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details, "request_id": request_id}}
