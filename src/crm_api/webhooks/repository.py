"""SQL for webhook endpoints and deliveries (the dispatcher's own SQL lives in dispatcher.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
from sqlalchemy import (
    ColumnElement,
    Select,
    Update,
    and_,
    delete,
    func,
    null,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.dml import ReturningDelete, ReturningInsert, ReturningUpdate

from .. import sql
from ..models.webhooks import DISABLED_DELETED

_ENDPOINTS = sql.table("webhook_endpoints")
_DELIVERIES = sql.table("webhook_deliveries")
_ATTEMPTS = sql.table("webhook_attempts")
_EVENTS = sql.table("events")

_ENDPOINT = (
    "id",
    "url",
    "description",
    "event_types",
    "ordering",
    "status",
    "disabled_reason",
    "created_at",
    "updated_at",
    "version",
    "secret",
    "previous_secret",
    "previous_secret_expires_at",
)
_DELIVERY = (
    "id",
    "endpoint_id",
    "event_id",
    "event_type",
    "event_sequence",
    "status",
    "attempts",
    "next_attempt_at",
    "last_status_code",
    "last_error",
    "created_at",
    "delivered_at",
)
_ATTEMPT = ("attempted_at", "status_code", "latency_ms", "error", "response_body")


def endpoint_api(
    row: dict[str, Any], with_secret: bool = False, warnings: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The API's form; a write's answer carries ``warnings`` (a list, maybe empty), a read's does not."""
    out: dict[str, Any] = {"object": "webhook_endpoint"}
    out.update({k: row[k] for k in _ENDPOINT if not k.startswith(("secret", "previous_"))})
    if with_secret:
        out["secret"] = row["secret"]
    if warnings is not None:
        out["warnings"] = warnings
    return out


def delivery_api(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"object": "webhook_delivery", **row}
    if out["status"] != "pending":
        out["next_attempt_at"] = None
    return out


def _endpoint_columns() -> list[ColumnElement[Any]]:
    return sql.columns(_ENDPOINT, _ENDPOINTS)


def _this_endpoint() -> ColumnElement[bool]:
    return and_(_ENDPOINTS.c.workspace_id == sql.param("ws"), _ENDPOINTS.c.id == sql.param("id"))


@sql.shape
def _insert_endpoint(names: tuple[str, ...]) -> ReturningInsert[Any]:
    # parameters are named for their columns (``url``): the caller's dict is the statement's parameters
    return insert(_ENDPOINTS).values({n: sql.param(n) for n in names}).returning(*_endpoint_columns())


async def insert_endpoint(conn: asyncpg.Connection, values: dict[str, Any]) -> dict[str, Any]:
    row = await _insert_endpoint(tuple(values)).fetchrow(conn, **values)
    return dict(row)


_GET_ENDPOINT = sql.Query(lambda: select(*_endpoint_columns()).where(_this_endpoint()))


async def get_endpoint(
    conn: asyncpg.Connection | asyncpg.Pool, ws: uuid.UUID, eid: uuid.UUID
) -> dict[str, Any] | None:
    row = await _GET_ENDPOINT.fetchrow(conn, ws=ws, id=eid)
    return dict(row) if row else None


_LOCK_ENDPOINT = sql.Query(
    lambda: select(_ENDPOINTS.c.version).where(_this_endpoint()).with_for_update(of=_ENDPOINTS)
)


async def lock_endpoint(conn: asyncpg.Connection, ws: uuid.UUID, eid: uuid.UUID) -> int | None:
    """The endpoint's version, its row locked until the transaction ends (None: no such endpoint). Held
    across an If-Match check and the write it allows, so that no dispatcher's disable slips in between."""
    version = await _LOCK_ENDPOINT.fetchval(conn, ws=ws, id=eid)
    return None if version is None else int(version)


_SAME_URL = sql.Query(
    lambda: (
        select(_ENDPOINTS.c.id, _ENDPOINTS.c.event_types, _ENDPOINTS.c.status)
        .where(_ENDPOINTS.c.workspace_id == sql.param("ws"), _ENDPOINTS.c.url == sql.param("url"))
        .order_by(_ENDPOINTS.c.created_at, _ENDPOINTS.c.id)
    )
)


async def endpoints_with_url(conn: asyncpg.Connection, ws: uuid.UUID, url: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await _SAME_URL.fetch(conn, ws=ws, url=url)]


@sql.shape
def _update_endpoint(names: tuple[str, ...]) -> ReturningUpdate[Any]:
    # ``set_<column>``: apart from the WHERE clause's ``ws`` and ``id`` whatever the columns are
    t = _ENDPOINTS
    sets: dict[str, Any] = {n: sql.param(f"set_{n}", t.c[n].type) for n in names}
    sets.update(version=t.c.version + sql.const(1), updated_at=func.now())
    return update(t).values(sets).where(_this_endpoint()).returning(*_endpoint_columns())


async def update_endpoint(
    conn: asyncpg.Connection, ws: uuid.UUID, eid: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any] | None:
    stmt = _update_endpoint(tuple(sorted(changes)))  # sorted: one statement per set of columns
    row = await stmt.fetchrow(conn, ws=ws, id=eid, **{f"set_{k}": v for k, v in changes.items()})
    return dict(row) if row else None


def _delete_endpoint() -> ReturningDelete[Any]:
    """Deletes an endpoint and returns its final state: disabled (reason ``deleted``), its version one
    up and updated now, as a last write would have left it."""
    t = _ENDPOINTS
    final = {
        "status": sql.const("disabled"),
        "disabled_reason": sql.const(DISABLED_DELETED),
        "updated_at": func.now(),
        "version": t.c.version + sql.const(1),
    }
    columns = [final[n].label(n) if n in final else t.c[n] for n in _ENDPOINT]
    return delete(t).where(_this_endpoint()).returning(*columns)


_DELETE_ENDPOINT = sql.Query(_delete_endpoint)


async def delete_endpoint(conn: asyncpg.Connection, ws: uuid.UUID, eid: uuid.UUID) -> dict[str, Any] | None:
    row = await _DELETE_ENDPOINT.fetchrow(conn, ws=ws, id=eid)
    return dict(row) if row else None


@sql.shape
def _list_endpoints(after: bool) -> Select[Any]:
    t = _ENDPOINTS
    stmt = select(*_endpoint_columns()).where(t.c.workspace_id == sql.param("ws"))
    if after:
        stmt = stmt.where(
            tuple_(t.c.created_at, t.c.id)
            > tuple_(sql.param("after_at", t.c.created_at.type), sql.param("after_id", t.c.id.type))
        )
    return stmt.order_by(t.c.created_at, t.c.id).limit(sql.param("limit"))


async def list_endpoints(
    conn: asyncpg.Connection | asyncpg.Pool,
    ws: uuid.UUID,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    stmt = _list_endpoints(after is not None)
    if after is None:
        rows = await stmt.fetch(conn, ws=ws, limit=int(limit) + 1)
    else:
        rows = await stmt.fetch(conn, ws=ws, after_at=after[0], after_id=after[1], limit=int(limit) + 1)
    return [dict(r) for r in rows]


@sql.shape
def _list_deliveries(by_status: bool, after: bool) -> Select[Any]:
    d = _DELIVERIES
    stmt = select(*sql.columns(_DELIVERY, d)).where(
        d.c.workspace_id == sql.param("ws"), d.c.endpoint_id == sql.param("endpoint_id")
    )
    if by_status:
        stmt = stmt.where(d.c.status == sql.param("status"))
    if after:
        stmt = stmt.where(
            tuple_(d.c.created_at, d.c.id)
            < tuple_(sql.param("after_at", d.c.created_at.type), sql.param("after_id", d.c.id.type))
        )
    return stmt.order_by(d.c.created_at.desc(), d.c.id.desc()).limit(sql.param("limit"))


async def list_deliveries(
    conn: asyncpg.Connection | asyncpg.Pool,
    ws: uuid.UUID,
    eid: uuid.UUID,
    status: str | None,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"ws": ws, "endpoint_id": eid, "limit": int(limit) + 1}
    if status is not None:
        params["status"] = status
    if after is not None:
        params.update(after_at=after[0], after_id=after[1])
    rows = await _list_deliveries(status is not None, after is not None).fetch(conn, **params)
    return [dict(r) for r in rows]


def _get_delivery() -> Select[Any]:
    d, a = _DELIVERIES.alias("d"), _ATTEMPTS.alias("a")
    return (
        select(*sql.columns(_DELIVERY, d), *(a.c[c].label(f"a_{c}") for c in _ATTEMPT))
        .select_from(d.outerjoin(a, and_(a.c.workspace_id == d.c.workspace_id, a.c.delivery_id == d.c.id)))
        .where(d.c.workspace_id == sql.param("ws"), d.c.id == sql.param("id"))
        .order_by(a.c.attempted_at)
    )


_GET_DELIVERY = sql.Query(_get_delivery)


async def get_delivery(
    conn: asyncpg.Connection | asyncpg.Pool, ws: uuid.UUID, did: uuid.UUID
) -> dict[str, Any] | None:
    # One statement, so the delivery and its attempts come from one snapshot: read in two, an attempt
    # recorded in between showed up beside a delivery row that did not yet know of it.
    rows = await _GET_DELIVERY.fetch(conn, ws=ws, id=did)
    if not rows:
        return None
    delivery = {k: v for k, v in dict(rows[0]).items() if not k.startswith("a_")}
    attempts = [{c: r[f"a_{c}"] for c in _ATTEMPT} for r in rows if r["a_attempted_at"] is not None]
    return {**delivery, "attempt_log": attempts}


def _requeue(*conditions: ColumnElement[bool]) -> Update:
    d = _DELIVERIES
    return (
        update(d)
        .values(status=sql.const("pending"), next_attempt_at=func.now(), leased_until=null())
        .where(d.c.workspace_id == sql.param("ws"), *conditions)
    )


_REQUEUE = sql.Query(lambda: _requeue(_DELIVERIES.c.id == sql.param("id")))
_REQUEUE_FAILED_SINCE = sql.Query(
    lambda: _requeue(
        _DELIVERIES.c.endpoint_id == sql.param("endpoint_id"),
        _DELIVERIES.c.status == sql.const("failed"),
        _DELIVERIES.c.created_at >= sql.param("since"),
    )
)


async def requeue(conn: asyncpg.Connection, ws: uuid.UUID, did: uuid.UUID) -> bool:
    status = await _REQUEUE.execute(conn, ws=ws, id=did)
    return bool(status.endswith(" 1"))


async def requeue_failed_since(
    conn: asyncpg.Connection, ws: uuid.UUID, eid: uuid.UUID, since: dt.datetime
) -> int:
    status = await _REQUEUE_FAILED_SINCE.execute(conn, ws=ws, endpoint_id=eid, since=since)
    return int(status.split()[-1])
