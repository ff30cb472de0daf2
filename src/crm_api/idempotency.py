"""Idempotency-Key: replay a finished write, refuse a reused key with another body, 409 while in flight.

Two ways to keep a write and its record together, by the route's connection:

- In a transaction (``LockingConn``: upserts, batches, orders, merges...): an advisory lock on the key,
  held until commit, tells a concurrent retry that the first attempt is still running (a plain unique insert
  would block it instead of answering 409); the record is written after the route, in the same transaction.
- Folded (``WriteConn``: create, update, archive, restore of one object): no BEGIN/COMMIT. A session lock on
  the key is taken with the lookup; the route says how its response renders (``folding``), and the write
  pipeline puts the record into the write's own statement. A create claims the key in that statement before
  its row goes in (the row is written only if the claim took) and releases the lock there: a twin that takes
  the lock before the commit waits on the claimed key, finds it taken, and replays the record. An update's
  record goes in only if the update did, and the lock is released after the commit. A create with a key is
  then two statements (lock and lookup; the write), where the transaction took six round trips.

Every write route says so with ``@idempotent`` (under its ``@router`` decorator); the OpenAPI document
declares the header on the routes it marks (``is_idempotent``). A response that carries a
secret (``http.SecretResponse``) is stored sealed under the master key, and opened to replay it.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, cast

import asyncpg
from fastapi import Request, Response
from sqlalchemy import BigInteger, ColumnElement, Integer, Select, and_, func, literal, select, true
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.sql.dml import ReturningInsert

from . import jsonutil, sql
from .auth import Principal
from .errors import BadRequest, IdempotencyInFlight, IdempotencyMismatch
from .http import SecretResponse
from .locks import key_lock
from .masterkey import Keyring, is_sealed

MAX_KEY_LENGTH = 255
P = ParamSpec("P")
_REPLAYED_HEADERS = ("location", "etag")
_MARK = "__crm_idempotent__"


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


def record_insert(only_if: ColumnElement[Any] | None = None) -> ReturningInsert[Any]:
    """Store a record (parameters ``ws``, ``key``, ``request_hash``, ``status``, ``headers``, ``body``,
    ``ttl``) or take over an expired one of the same key; returns a row when it did, nothing when a live one
    holds the key. ``only_if`` makes it conditional (folded writes put it into their own statement)."""
    t = sql.table("idempotency_keys")
    row = select(
        sql.param("ws", t.c.workspace_id.type),
        sql.param("key", t.c.key.type),
        sql.param("request_hash", t.c.request_hash.type),
        sql.param("status", t.c.status.type),
        sql.param("headers", JSONB),
        sql.param("body", t.c.body.type),
        func.now(),
    )
    if only_if is not None:
        row = row.where(only_if)
    names = ["workspace_id", "key", "request_hash", "status", "headers", "body", "created_at"]
    stmt = insert(t).from_select(names, row)
    # expired: the same test as created_at <= now() - ttl, in immutable terms (Citus allows no other
    # function in ON CONFLICT DO UPDATE; EXCLUDED.created_at is now())
    expired = stmt.excluded.created_at - t.c.created_at >= _ttl()
    return stmt.on_conflict_do_update(
        index_elements=[t.c.workspace_id, t.c.key],
        set_={c: stmt.excluded[c] for c in names[2:]},
        where=expired,
    ).returning(true())


def _save() -> ReturningInsert[Any]:
    """Store the response, or take over an expired record of the same key; nothing when a live one exists."""
    return record_insert()


def _session_lock_and_lookup() -> Select[Any]:
    """As ``_lock_and_lookup``, with a session lock (folded writes run without a transaction)."""
    stmt = _lock_and_lookup()
    return stmt.with_only_columns(
        func.pg_try_advisory_lock(sql.param("lock", BigInteger)).label("got"),
        *list(stmt.selected_columns)[1:],
        maintain_column_froms=True,
    )


def _unlock() -> Select[Any]:
    return select(func.pg_advisory_unlock(sql.param("lock", BigInteger)))


def _save_and_unlock() -> Select[Any]:
    saved = _save().cte("saved")
    return select(
        select(func.count()).select_from(saved).scalar_subquery().label("saved"),
        func.pg_advisory_unlock(sql.param("lock", BigInteger)).label("unlocked"),
    ).add_cte(saved)


# the hot path: compiled once, on first use
_LOCK_AND_LOOKUP = sql.Query(_lock_and_lookup)
_SESSION_LOCK_AND_LOOKUP = sql.Query(_session_lock_and_lookup)
_SAVE = sql.Query(_save)
_SAVE_AND_UNLOCK = sql.Query(_save_and_unlock)
_UNLOCK = sql.Query(_unlock)


@dataclass(slots=True)
class Record:
    """A folded write's pending record: what the write statement stores beside the write."""

    workspace_id: uuid.UUID
    key: str
    request_hash: str
    ttl: int
    lock: int
    spec: object | None = None
    """The resource whose one-object write the route answers with (set by ``folding``)."""
    render: Callable[[dict[str, Any]], Response] | None = None
    """The route's response for the written row."""
    saved: bool = False
    """The record went into the write's statement."""
    unlocked: bool = False

    def params(self, response: Response) -> dict[str, Any]:
        stored = {h: response.headers[h] for h in _REPLAYED_HEADERS if h in response.headers}
        return {
            "ws": self.workspace_id,
            "key": self.key,
            "request_hash": self.request_hash,
            "status": response.status_code,
            "headers": jsonutil.dumps_str(stored),
            "body": bytes(response.body).decode(),
            "ttl": self.ttl,
            "lock": self.lock,
        }


_PENDING: ContextVar[Record | None] = ContextVar("idempotency_record", default=None)


class Taken(Exception):
    """A folded create found its key claimed by a twin that committed first: answer with the twin's."""


def folding(spec: object, render: Callable[[dict[str, Any]], Response]) -> None:
    """Called by a one-object write route before it writes: when the request is folded, its record goes
    into the statement that writes ``spec``'s object, rendered as the route will answer."""
    record = _PENDING.get()
    if record is not None:
        record.spec, record.render = spec, render


def pending(spec: object) -> Record | None:
    """The folded record a write of ``spec``'s one object should store, if any (the write pipeline asks)."""
    record = _PENDING.get()
    if record is None or record.saved or record.spec is not spec or record.render is None:
        return None
    return record


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

    setattr(once, _MARK, True)
    return once


def is_idempotent(endpoint: Callable[..., Any]) -> bool:
    """Whether a route's endpoint runs under ``@idempotent`` (takes an ``Idempotency-Key``)."""
    return bool(getattr(endpoint, _MARK, False))


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
    if not conn.is_in_transaction():
        return await _folded(request, conn, principal, handler, key, fingerprint, ttl)
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
        return _replay(state, fingerprint, request)
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


def _replay(state: Any, fingerprint: str, request: Request) -> Response:
    if state["request_hash"] != fingerprint:
        raise IdempotencyMismatch("This Idempotency-Key was first used with a different request")
    headers: dict[str, str] = dict(state["headers"])
    headers["idempotent-replayed"] = "true"
    body: str = state["body"]
    if is_sealed(body):
        keyring: Keyring = request.app.state.keyring
        body = keyring.open(body)
    return Response(body, status_code=state["status"], headers=headers, media_type="application/json")


async def _folded(
    request: Request,
    conn: asyncpg.Connection,
    principal: Principal,
    handler: Callable[[], Awaitable[Response]],
    key: str,
    fingerprint: str,
    ttl: int,
) -> Response:
    """A write of one object without a transaction: see the module's docstring."""
    lock = key_lock(principal.workspace_id, "idempotency", key)
    lookup = {"lock": lock, "ws": principal.workspace_id, "key": key, "ttl": ttl}
    state = await _SESSION_LOCK_AND_LOOKUP.fetchrow(conn, **lookup)
    if not state["got"]:
        raise IdempotencyInFlight("A request with this Idempotency-Key is still running; retry shortly")
    record = Record(principal.workspace_id, key, fingerprint, ttl, lock)
    token = _PENDING.set(record)
    try:
        if state["request_hash"] is not None:
            return _replay(state, fingerprint, request)
        try:
            response = await handler()
        except Taken:
            # a twin claimed the key and committed between our lookup and our write: its answer is ours
            state = await _LOCK_AND_LOOKUP.fetchrow(conn, **lookup)
            if state["request_hash"] is None:
                raise IdempotencyInFlight("A request with this Idempotency-Key is still running") from None
            return _replay(state, fingerprint, request)
        if record.saved:
            return response
        # the route wrote nothing (an update that changed nothing) or wrote it another way: record it now
        saved = await _SAVE_AND_UNLOCK.fetchrow(conn, **record.params(response))
        record.unlocked = True
        if not saved["saved"]:
            raise IdempotencyInFlight(
                "A request with this Idempotency-Key has just finished; retry to get its result"
            )
        return response
    finally:
        _PENDING.reset(token)
        if not record.unlocked:
            try:
                await _UNLOCK.fetchval(conn, lock=lock)
            except BaseException:
                # a connection that may still hold the lock must not serve anyone else
                conn.terminate()
                raise
