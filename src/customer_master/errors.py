"""The one error shape of the API: every failure is an `AppError` with its code and HTTP status."""

from typing import Any


class AppError(Exception):
    code = "INTERNAL_ERROR"
    status = 500
    message = "Internal error"

    def __init__(self, message: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details or {}


class AuthRequired(AppError):
    code, status, message = "AUTH_REQUIRED", 401, "Authentication required"


class Forbidden(AppError):
    code, status, message = "FORBIDDEN", 403, "Your role may not do this"


class NotFound(AppError):
    code, status, message = "NOT_FOUND", 404, "Not found"


class MethodNotAllowed(AppError):
    code, status, message = "METHOD_NOT_ALLOWED", 405, "Method not allowed"


class Conflict(AppError):
    code, status, message = "CONFLICT", 409, "Conflict"

    def __init__(self, message: str, field: str, existing_id: Any) -> None:
        existing = str(existing_id) if existing_id is not None else None
        super().__init__(message, {"field": field, "existing_id": existing})


class PreconditionFailed(AppError):
    code, status, message = "PRECONDITION_FAILED", 412, "The resource has changed since you read it"


class PayloadTooLarge(AppError):
    code, status, message = "PAYLOAD_TOO_LARGE", 413, "Payload too large"


class UnsupportedMediaType(AppError):
    code, status, message = "UNSUPPORTED_MEDIA_TYPE", 415, "Send the body as application/json"


class ValidationFailed(AppError):
    code, status, message = "VALIDATION_ERROR", 422, "Validation failed"

    def __init__(self, errors: list[dict[str, Any]], message: str | None = None) -> None:
        super().__init__(message or self.message, {"errors": errors})

    @classmethod
    def one(cls, field: str | None, reason: str) -> "ValidationFailed":
        return cls([{"field": field, "reason": reason}], message=reason)


class RateLimited(AppError):
    code, status, message = "RATE_LIMITED", 429, "Too many failed logins; try again later"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__()
        self.retry_after_s = retry_after_s


class ServiceUnavailable(AppError):
    code, status, message = "SERVICE_UNAVAILABLE", 503, "The database is unavailable; retry later"


def error_body(code: str, message: str, details: dict[str, Any], request_id: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details, "request_id": request_id}}
