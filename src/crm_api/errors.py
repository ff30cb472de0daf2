"""The error tree and its problem+json rendering (RFC 9457).

    CRMError (500 internal_error)
    ├── Merged (301 merged)
    ├── BadRequest (400 bad_request)
    │   └── InvalidCursor (400 invalid_cursor)
    ├── Unauthorized (401 unauthorized)
    ├── Forbidden (403 forbidden)
    ├── NotFound (404 not_found)
    ├── Conflict (409 conflict)
    │   ├── IdempotencyInFlight (409 idempotency_in_flight)
    │   └── MergedConflict (409 merged)
    ├── PreconditionFailed (412 precondition_failed)
    ├── RequestTimeout (408 request_timeout)
    ├── PayloadTooLarge (413 payload_too_large)
    ├── Unprocessable (422 validation_error)
    │   └── IdempotencyMismatch (422 idempotency_key_reused)
    ├── HeadersTooLarge (431 headers_too_large)
    ├── RateLimited (429 rate_limited)
    └── Unavailable (503 unavailable, with Retry-After)
        ├── DatabaseUnavailable (503 database_unavailable)
        ├── Timeout (503 timeout)
        └── Overloaded (503 overloaded)

Raise them anywhere below the router; one handler renders them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

PROBLEM_BASE = "https://crm-api.dev/problems/"
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str


class CRMError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal server error"

    def __init__(self, detail: str | None = None, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or []

    def body(self, request_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            "request_id": request_id,
        }
        if self.errors:
            body["errors"] = [{"path": e.path, "message": e.message} for e in self.errors]
        return body

    def headers(self) -> dict[str, str] | None:
        """Response headers the problem needs (``Location`` on a 301)."""
        return None


class Merged(CRMError):
    """A read of a merged object: 301 to the survivor, so integrations holding old ids keep working."""

    status = 301
    code = "merged"
    title = "The object was merged into another"

    def __init__(self, detail: str, merged_into: object, location: str) -> None:
        super().__init__(detail)
        self.merged_into = str(merged_into)
        self.location = location

    def body(self, request_id: str) -> dict[str, Any]:
        return {**super().body(request_id), "merged_into": self.merged_into}

    def headers(self) -> dict[str, str] | None:
        return {"Location": self.location}


class BadRequest(CRMError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class InvalidCursor(BadRequest):
    code = "invalid_cursor"
    title = "Invalid cursor"

    def __init__(self, detail: str | None = None, errors: list[FieldError] | None = None) -> None:
        """Names the ``cursor`` parameter (query or body: both are called cursor) unless told otherwise."""
        super().__init__(detail, errors or [FieldError("/cursor", detail or self.title)])


class Unauthorized(CRMError):
    status = 401
    code = "unauthorized"
    title = "Missing or invalid API key"

    def headers(self) -> dict[str, str] | None:
        """RFC 9110 asks a 401 to name the scheme the client should use (RFC 6750: Bearer)."""
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(CRMError):
    status = 403
    code = "forbidden"
    title = "The API key lacks the required scope"


class NotFound(CRMError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(CRMError):
    status = 409
    code = "conflict"
    title = "Conflict"


class IdempotencyInFlight(Conflict):
    code = "idempotency_in_flight"
    title = "A request with this Idempotency-Key is still being processed"


class MergedConflict(Conflict):
    """A write to a merged object: refused (not redirected, as clients may replay a 301 as a GET)."""

    code = "merged"
    title = "The object was merged into another"

    def __init__(self, detail: str, merged_into: object) -> None:
        super().__init__(detail)
        self.merged_into = str(merged_into)

    def body(self, request_id: str) -> dict[str, Any]:
        return {**super().body(request_id), "merged_into": self.merged_into}


class PreconditionFailed(CRMError):
    status = 412
    code = "precondition_failed"
    title = "The object has changed since the version given in If-Match"


class PayloadTooLarge(CRMError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"


class Unprocessable(CRMError):
    status = 422
    code = "validation_error"
    title = "Validation failed"


class IdempotencyMismatch(Unprocessable):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used with a different request"


class RequestTimeout(CRMError):
    """The request's body did not arrive before its deadline; the connection is closed."""

    status = 408
    code = "request_timeout"
    title = "The request was not received in time"

    def headers(self) -> dict[str, str] | None:
        return {"Connection": "close"}


class HeadersTooLarge(CRMError):
    status = 431
    code = "headers_too_large"
    title = "Request headers too large"


class Unavailable(CRMError):
    """A fault of ours, not of the request, that passes: the client should retry after ``Retry-After``
    seconds (safely, with an Idempotency-Key, for a write whose outcome it did not learn)."""

    status = 503
    code = "unavailable"
    title = "Service unavailable"
    retry_after: int = 5
    """Seconds; a subclass sets its own, and a raise may give one."""

    def __init__(self, detail: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(detail)
        if retry_after is not None:
            self.retry_after = retry_after

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}


class DatabaseUnavailable(Unavailable):
    """The database is unreachable, shutting down or starting, out of disk, memory or connections."""

    code = "database_unavailable"
    title = "The database is unavailable"


class Timeout(Unavailable):
    """A statement, a lock wait, a wait for a pooled connection or the request as a whole ran out of time;
    the request's transaction was rolled back."""

    code = "timeout"
    title = "The request ran out of time"
    retry_after = 2


class Overloaded(Unavailable):
    """The process holds as many connections as it may."""

    code = "overloaded"
    title = "The server is at its connection limit"
    retry_after = 1


class RateLimited(CRMError):
    """Over a quota (ratelimit.py): the API key's, the workspace's, or the client address's failed
    authentications. ``Retry-After`` says when to try again."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}


def field_error(path: str, message: str, detail: str | None = None) -> Unprocessable:
    return Unprocessable(detail or f"{path.lstrip('/') or 'body'}: {message}", [FieldError(path, message)])


def problem_schema() -> dict[str, Any]:
    """The JSON schema of a problem document, for the OpenAPI spec."""
    return {
        "type": "object",
        "required": ["type", "title", "status", "code", "request_id"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "request_id": {"type": "string"},
            "merged_into": {
                "type": "string",
                "format": "uuid",
                "description": "code merged: the object that now holds this one's data",
            },
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["path", "message"],
                    "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    }
