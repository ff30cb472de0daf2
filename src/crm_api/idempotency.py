"""Idempotency-Key: replay a finished write, refuse a reused key with another body, 409 while in flight.

The record is written in the request's own transaction, so a write and its record commit together or not
at all. An advisory lock on the key, held until that commit, is how a concurrent retry learns that the
first attempt is still running (a plain unique insert would block it instead of answering 409).

Every write route says so with ``@idempotent`` (under its ``@router`` decorator).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, cast

import asyncpg
from fastapi import Request, Response

from . import jsonutil
from .auth import Principal
from .errors import BadRequest, IdempotencyInFlight, IdempotencyMismatch
from .locks import key_lock

MAX_KEY_LENGTH = 255
P = ParamSpec("P")
_REPLAYED_HEADERS = ("location", "etag")


def request_fingerprint(request: Request, body: bytes) -> str:
    h = hashlib.sha256()
    h.update(request.method.encode())
    h.update(b"\x00" + request.url.path.encode() + b"\x00" + request.url.query.encode() + b"\x00")
    h.update(body)
    return h.hexdigest()


def idempotent(route: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    """Run a write route under the request's Idempotency-Key, if it sends one: a replay answers with the
    stored response without running the route; otherwise the route runs and its response is recorded in
    the same transaction. The route must take ``request``, ``principal`` and ``conn`` (a transaction:
    ``WriteConn`` or ``LockingConn``); FastAPI reads the route's own signature through the wrapper."""
    missing = {"request", "principal", "conn"} - set(inspect.signature(route).parameters)
    if missing:
        raise TypeError(f"@idempotent: {route.__qualname__} must take {', '.join(sorted(missing))}")

    @functools.wraps(route)
    async def once(*args: P.args, **kwargs: P.kwargs) -> Response:
        # FastAPI calls routes with keyword arguments only
        request, principal = cast(Request, kwargs["request"]), cast(Principal, kwargs["principal"])
        return await run_once(request, kwargs["conn"], principal, lambda: route(*args, **kwargs))

    return once


async def run_once(
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
    ttl = request.app.state.settings.idempotency_ttl_hours
    # Lock and look up in one round trip. The lookup's snapshot may predate a twin request's commit; the
    # insert below notices that case (the key is taken) and the request rolls back with a 409.
    state = await conn.fetchrow(
        "SELECT pg_try_advisory_xact_lock($1) AS got, r.request_hash, r.status, r.headers, r.body "
        "FROM (SELECT 1) AS one LEFT JOIN idempotency_keys AS r ON r.workspace_id = $2 AND r.key = $3 "
        "AND r.created_at > now() - make_interval(hours => $4)",
        key_lock(principal.workspace_id, "idempotency", key),
        principal.workspace_id,
        key,
        ttl,
    )
    if not state["got"]:
        raise IdempotencyInFlight("A request with this Idempotency-Key is still running; retry shortly")
    if state["request_hash"] is not None:
        if state["request_hash"] != fingerprint:
            raise IdempotencyMismatch("This Idempotency-Key was first used with a different request")
        headers: dict[str, str] = dict(state["headers"])
        headers["idempotent-replayed"] = "true"
        return Response(
            state["body"], status_code=state["status"], headers=headers, media_type="application/json"
        )
    response = await handler()
    stored: dict[str, Any] = {h: response.headers[h] for h in _REPLAYED_HEADERS if h in response.headers}
    saved = await conn.fetchval(
        "INSERT INTO idempotency_keys (workspace_id, key, request_hash, status, headers, body, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, now()) "
        "ON CONFLICT (workspace_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, "
        "status = EXCLUDED.status, headers = EXCLUDED.headers, body = EXCLUDED.body, "
        "created_at = EXCLUDED.created_at "
        # expired: the same test as created_at <= now() - ttl, in IMMUTABLE terms (Citus allows no other
        # function in ON CONFLICT DO UPDATE; EXCLUDED.created_at is now())
        "WHERE EXCLUDED.created_at - idempotency_keys.created_at >= make_interval(hours => $7) "
        "RETURNING true",
        principal.workspace_id,
        key,
        fingerprint,
        response.status_code,
        jsonutil.dumps_str(stored),
        bytes(response.body).decode(),
        ttl,
    )
    if not saved:
        raise IdempotencyInFlight(
            "A request with this Idempotency-Key has just finished; retry to get its result"
        )
    return response
