"""Idempotency-Key: replay a finished write, refuse a reused key with another body, 409 while in flight.

The record is written in the request's own transaction, so a write and its record commit together or not
at all. An advisory lock on the key, held until that commit, is how a concurrent retry learns that the
first attempt is still running (a plain unique insert would block it instead of answering 409).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from fastapi import Request, Response

from . import jsonutil
from .auth import Principal
from .errors import BadRequest, IdempotencyInFlight, IdempotencyMismatch
from .resources.repository import lock_hash

MAX_KEY_LENGTH = 255
_REPLAYED_HEADERS = ("location", "etag")


def request_fingerprint(request: Request, body: bytes) -> str:
    h = hashlib.sha256()
    h.update(request.method.encode())
    h.update(b"\x00" + request.url.path.encode() + b"\x00" + request.url.query.encode() + b"\x00")
    h.update(body)
    return h.hexdigest()


async def idempotent(
    request: Request,
    conn: asyncpg.Connection,
    principal: Principal,
    handler: Callable[[], Awaitable[Response]],
) -> Response:
    key = request.headers.get("idempotency-key")
    if key is None:
        return await handler()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters")
    fingerprint = request_fingerprint(request, await request.body())
    got = await conn.fetchval(
        "SELECT pg_try_advisory_xact_lock($1)", lock_hash(str(principal.workspace_id), "idempotency", key)
    )
    if not got:
        raise IdempotencyInFlight("A request with this Idempotency-Key is still running; retry shortly")
    previous = await conn.fetchrow(
        "SELECT request_hash, status, headers, body FROM idempotency_keys "
        "WHERE workspace_id = $1 AND key = $2 AND created_at > now() - make_interval(hours => $3)",
        principal.workspace_id,
        key,
        request.app.state.settings.idempotency_ttl_hours,
    )
    if previous is not None:
        if previous["request_hash"] != fingerprint:
            raise IdempotencyMismatch("This Idempotency-Key was first used with a different request")
        headers: dict[str, str] = dict(previous["headers"])
        headers["idempotent-replayed"] = "true"
        return Response(
            previous["body"], status_code=previous["status"], headers=headers, media_type="application/json"
        )
    response = await handler()
    stored: dict[str, Any] = {h: response.headers[h] for h in _REPLAYED_HEADERS if h in response.headers}
    await conn.execute(
        "INSERT INTO idempotency_keys (workspace_id, key, request_hash, status, headers, body, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, now()) "
        "ON CONFLICT (workspace_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, "
        "status = EXCLUDED.status, headers = EXCLUDED.headers, body = EXCLUDED.body, created_at = now()",
        principal.workspace_id,
        key,
        fingerprint,
        response.status_code,
        jsonutil.dumps_str(stored),
        bytes(response.body).decode(),
    )
    return response
