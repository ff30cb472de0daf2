"""What every router shares about HTTP: the documented problem responses, JSON bodies, the ETag and
Location headers, and the caller's Context taken from the request."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

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
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    ref = {"schema": {"$ref": "#/components/schemas/Problem"}}
    return {
        c: {"description": _DESCRIPTIONS[c], "content": {PROBLEM_JSON: ref}}
        for c in (400, 401, 403, 413, *codes)
    }


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
