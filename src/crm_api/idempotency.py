"""Idempotency-Key: replay a finished write, refuse a reused key with another body, 409 while in flight.

The record is written in the request's own transaction, so a write and its record commit together or not
at all. An advisory lock on the key, held until that commit, is how a concurrent retry learns that the
first attempt is still running (a plain unique insert would block it instead of answering 409).

Every write route says so with ``@idempotent`` (under its ``@router`` decorator). A response that carries a
secret (``http.SecretResponse``) is stored sealed under the master key, and opened to replay it.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, cast

import asyncpg
from fastapi import Request, Response
from sqlalchemy import BigInteger, ColumnElement, Insert, Integer, Select, and_, func, literal, select, true
from sqlalchemy.dialects.postgresql import JSONB, insert

from . import jsonutil, sql
from .auth import Principal
from .errors import BadRequest, IdempotencyInFlight, IdempotencyMismatch
from .http import SecretResponse
from .locks import key_lock
from .masterkey import Keyring, is_sealed

MAX_KEY_LENGTH = 255
P = ParamSpec("P")
_REPLAYED_HEADERS = ("location", "etag")


def _ttl() -> ColumnElement[Any]:
    """``make_interval(hours => ttl)``, with the arguments by position (years, months, weeks, days, hours):
    Core has no named-argument call."""
    return func.make_interval(0, 0, 0, 0, sql.param("ttl", Integer))


def _fresh_since() -> ColumnElement[Any]:
    return func.now() - _ttl()


def _lock_and_lookup() -> Select[Any]:
    """The advisory lock on the key and the stored record, one row whether or not a record exists."""
    r = sql.table("idempotency_keys").alias("r")
    one = select(literal(1).label("one")).subquery("one")
    record = and_(
        r.c.workspace_id == sql.param("ws"), r.c.key == sql.param("key"), r.c.created_at > _fresh_since()
    )
    return select(
        func.pg_try_advisory_xact_lock(sql.param("lock", BigInteger)).label("got"),
        r.c.request_hash,
        r.c.status,
        r.c.headers,
        r.c.body,
    ).select_from(one.outerjoin(r, record))


def _save() -> Insert:
    """Store the response, or take over an expired record of the same key; nothing when a live one exists."""
    t = sql.table("idempotency_keys")
    stmt = insert(t).values(
        workspace_id=sql.param("ws"),
        key=sql.param("key"),
        request_hash=sql.param("request_hash"),
        status=sql.param("status"),
        headers=sql.param("headers", JSONB),
        body=sql.param("body"),
        created_at=func.now(),
    )
    replaced = ("request_hash", "status", "headers", "body")
    # expired: the same test as created_at <= now() - ttl, in immutable terms (Citus allows no other
    # function in ON CONFLICT DO UPDATE; EXCLUDED.created_at is now())
    expired = stmt.excluded.created_at - t.c.created_at >= _ttl()
    return stmt.on_conflict_do_update(
        index_elements=[t.c.workspace_id, t.c.key],
        set_={c: stmt.excluded[c] for c in (*replaced, "created_at")},
        where=expired,
    ).returning(true())


# the hot path: compiled once, on first use
_LOCK_AND_LOOKUP = sql.Query(_lock_and_lookup)
_SAVE = sql.Query(_save)


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
    state = await _LOCK_AND_LOOKUP.fetchrow(
        conn,
        lock=key_lock(principal.workspace_id, "idempotency", key),
        ws=principal.workspace_id,
        key=key,
        ttl=ttl,
    )
    if not state["got"]:
        raise IdempotencyInFlight("A request with this Idempotency-Key is still running; retry shortly")
    if state["request_hash"] is not None:
        if state["request_hash"] != fingerprint:
            raise IdempotencyMismatch("This Idempotency-Key was first used with a different request")
        headers: dict[str, str] = dict(state["headers"])
        headers["idempotent-replayed"] = "true"
        stored_body: str = state["body"]
        if is_sealed(stored_body):
            keyring: Keyring = request.app.state.keyring
            stored_body = keyring.open(stored_body)
        return Response(
            stored_body, status_code=state["status"], headers=headers, media_type="application/json"
        )
    response = await handler()
    stored: dict[str, Any] = {h: response.headers[h] for h in _REPLAYED_HEADERS if h in response.headers}
    body = bytes(response.body).decode()
    if isinstance(response, SecretResponse):
        body = request.app.state.keyring.seal(body)
    saved = await _SAVE.fetchval(
        conn,
        ws=principal.workspace_id,
        key=key,
        request_hash=fingerprint,
        status=response.status_code,
        headers=jsonutil.dumps_str(stored),
        body=body,
        ttl=ttl,
    )
    if not saved:
        raise IdempotencyInFlight(
            "A request with this Idempotency-Key has just finished; retry to get its result"
        )
    return response
