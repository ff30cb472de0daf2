"""What every router shares about HTTP: the documented responses (problems, and the headers a success
carries), JSON bodies, the ETag and Location headers, and the caller's Context taken from the request."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel

from . import jsonutil
from .auth import Context, Principal
from .errors import PROBLEM_JSON

_DESCRIPTIONS = {
    400: "Malformed request (bad JSON, bad cursor, bad header)",
    401: "Missing or unknown API key",
    403: "The API key lacks the scope",
    404: "No such object in this workspace",
    409: "Conflict with another object, or a request with this Idempotency-Key still running",
    412: "If-Match names a version that is no longer current",
    413: "Request body too large",
    422: "Validation failed; `errors` names each field",
    429: "Over this API key's or this workspace's quota, or too many refused keys from this address "
    "(`code: rate_limited`): retry after `Retry-After` seconds",
    503: "The service cannot answer right now (a fault of ours, such as the database being unreachable): "
    "retry after `Retry-After` seconds",
}
PROBLEM_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    412: "PreconditionFailed",
    413: "PayloadTooLarge",
    422: "ValidationFailed",
    429: "TooManyRequests",
    503: "Unavailable",
}
"""The problem responses' names among the OpenAPI document's ``components/responses``."""
HEADERS = "#/components/headers/"
"""Where the OpenAPI document keeps the response headers (``apidocs.RESPONSE_HEADERS``)."""


def problem_response(status: int) -> dict[str, Any]:
    """The problem response of a status, as the routes declare it (``problems``)."""
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS[status],
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in (429, 503):
        response["headers"] = {"Retry-After": {"$ref": HEADERS + "Retry-After"}}
    return response


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The problem responses of a route: those every route can give (400, 401, 403, 413, 429, 503) and
    ``codes``."""
    return {c: problem_response(c) for c in sorted({400, 401, 403, 413, 429, 503, *codes})}


def success(
    status: int, *headers: str, model: type[Any] | None = None, description: str | None = None
) -> dict[int | str, dict[str, Any]]:
    """A success response that sends ``headers`` (``ETag`` from ``versioned_response``, ``Location`` on a
    create), for a route's ``responses``; ``model`` and ``description`` for a status beside the route's
    own (an upsert's 201)."""
    response: dict[str, Any] = {"headers": {h: {"$ref": HEADERS + h} for h in headers}}
    if model is not None:
        response["model"] = model
    if description is not None:
        response["description"] = description
    return {status: response}


BODY_MODELS: list[type[BaseModel]] = []
"""Models of request bodies routes read themselves (``request_body``), added to the spec's components."""


def request_body(content: dict[str, type[BaseModel]], **encodings: dict[str, Any]) -> dict[str, Any]:
    """A route's ``openapi_extra`` declaring a body the route reads itself (one FastAPI would read whole
    before the route runs), a model per media type; ``encodings``: a media type's part encodings."""
    BODY_MODELS.extend(content.values())
    declared: dict[str, Any] = {}
    for media, model in content.items():
        declared[media] = {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        if media in encodings:
            declared[media]["encoding"] = encodings[media]
    return {"requestBody": {"required": True, "content": declared}}


def context(request: Request, principal: Principal) -> Context:
    return Context(principal, getattr(request.state, "request_id", None))


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        jsonutil.dumps(payload), status_code=status, headers=headers, media_type="application/json"
    )


class SecretResponse(Response):
    """An answer that carries a secret the API shows once (a new API key, a webhook signing secret): its
    Idempotency-Key record is stored sealed under the master key (idempotency.py)."""


def secret_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return SecretResponse(
        jsonutil.dumps(payload), status_code=status, headers=headers, media_type="application/json"
    )


def versioned_response(obj: Any, version: int, status: int = 200, location: str | None = None) -> Response:
    """An object with its version as the ETag (which If-Match sends back), and a created one's Location."""
    headers = {"ETag": f'"{version}"'}
    if location is not None:
        headers["Location"] = location
    return json_response(obj, status, headers)


IF_NONE_MATCH_DOC = (
    'The ETag of a copy held (`"3"`; several comma-separated, or `*`): while the object is still at that '
    "version the answer is 304 with no body."
)
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {
        "description": "Not modified: the object is still at the version `If-None-Match` names",
        "headers": {"ETag": {"$ref": "#/components/headers/ETag"}},
    }
}


def if_none_match(note: str = "") -> dict[str, Any]:
    """The ``If-None-Match`` parameter of a GET that answers ``not_modified``, for its ``openapi_extra``."""
    description = IF_NONE_MATCH_DOC + (" " + note if note else "")
    return {"name": "If-None-Match", "in": "header", "required": False, "description": description,
            "schema": {"type": "string"}}  # fmt: skip


def not_modified(request: Request, version: int) -> Response | None:
    """A 304 with the ETag when ``If-None-Match`` names the object's version (or is ``*``), else None.
    Compared weakly, as RFC 9110 has it for this header: ``W/"3"`` matches ``"3"``."""
    for name, value in request.scope["headers"]:  # the first, as ``request.headers`` gives it, without
        if name == b"if-none-match":  # building that mapping for the one header
            header = value.decode("latin-1")
            break
    else:
        return None
    etag = f'"{version}"'
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return Response(status_code=304, headers={"ETag": etag})
    return None
