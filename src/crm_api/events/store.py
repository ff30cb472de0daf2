"""The event log's SQL, which writers fold into their own statement (one round trip, and an event cannot
exist without the change it records, or the reverse): the ``ev`` CTE that inserts a statement's events,
and the fan-out that queues a delivery for each endpoint that gets the event (``webhooks.matching``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy import CTE, ColumnElement, Insert, Select, case, column, func, literal_column, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.sql.dml import ReturningInsert
from sqlalchemy.sql.selectable import TableValuedAlias

from .. import sql
from ..webhooks.matching import endpoint_gets_event

EVENT_FIELDS = (
    "workspace_id",
    "id",
    "type",
    "object_type",
    "object_id",
    "actor",
    "request_id",
    "data",
    "created_at",
)


def recordset(param: str, table: str, alias: str, *, ordinality: bool = False) -> TableValuedAlias:
    """``jsonb_populate_recordset(NULL::<table>, :param)``: a JSON array parameter's rows typed as the
    table's (one parameter for a whole batch)."""
    t = sql.table(table)
    # a table's row type is not a type SQLAlchemy can name: a reviewed fragment
    row_type: ColumnElement[Any] = literal_column(f"NULL::{t.name}")
    fn = func.jsonb_populate_recordset(row_type, sql.param(param, JSONB))
    cols = [column(c.name, c.type) for c in t.columns]
    if ordinality:
        return fn.table_valued(*cols, with_ordinality="ordinality").alias(alias)
    return fn.table_valued(*cols).alias(alias)


def marked() -> ColumnElement[bool]:
    """A condition every events insert carries: ``crm_mark_event_draw()`` (migration 0018) as an
    uncorrelated subquery, which PostgreSQL runs once, before the statement's first row and so before its
    first sequence is drawn. The feed's bound relies on it (``horizon.py``)."""
    return select(func.crm_mark_event_draw()).scalar_subquery()


def events_cte(param: str, only_if: Callable[[TableValuedAlias], ColumnElement[Any]]) -> CTE:
    """The ``ev`` CTE: insert the events of the jsonb array parameter ``param`` for which ``only_if(e)``
    holds, returning (id, sequence, type, object_id) for the fan-out."""
    ev_t = sql.table("events")
    emitted = recordset(param, "events", "emitted", ordinality=True)
    rows = (
        select(*sql.columns(EVENT_FIELDS, emitted))
        .where(only_if(emitted), marked())
        # sequences follow the order the events were emitted in (created before won), whatever join the
        # planner picks for the filter (a hash join reordered them on PostgreSQL 18)
        .order_by(emitted.c.ordinality)
    )
    return (
        insert(ev_t)
        .from_select(list(EVENT_FIELDS), rows)
        .returning(ev_t.c.id, ev_t.c.sequence, ev_t.c.type, ev_t.c.object_id)
        .cte("ev")
    )


def fanout(ev: CTE) -> Insert:
    """One delivery per (event, endpoint that gets it); an endpoint disabled for failing gets its
    deliveries parked (due at infinity). ``ev`` has (id, sequence, type, object_id); the workspace is the
    ``ws`` parameter."""
    ep = sql.table("webhook_endpoints")
    d = sql.table("webhook_deliveries")
    ws = sql.param("ws")
    due = case((ep.c.status == "enabled", func.now()), else_=literal_column("'infinity'::timestamptz"))
    source: Select[Any] = select(
        ws, func.gen_random_uuid(), ep.c.id, ev.c.id, ev.c.sequence, ev.c.type, ev.c.object_id, due
    ).select_from(ev.join(ep, (ep.c.workspace_id == ws) & endpoint_gets_event(ep, ev)))
    return insert(d).from_select(
        [
            "workspace_id",
            "id",
            "endpoint_id",
            "event_id",
            "event_sequence",
            "event_type",
            "object_id",
            "next_attempt_at",
        ],
        source,
    )


def _insert_test_event() -> ReturningInsert[Any]:
    """A ``webhook.test`` event and its one delivery, to this endpoint only: one statement."""
    ev_t, d = sql.table("events"), sql.table("webhook_deliveries")
    ws, endpoint_id = sql.param("ws"), sql.param("endpoint_id", d.c.endpoint_id.type)
    values = {
        "workspace_id": ws,
        "id": sql.param("event_id", ev_t.c.id.type),
        "type": sql.const("webhook.test"),
        "object_type": sql.const("webhook_endpoint"),
        "object_id": endpoint_id,
        "actor": sql.param("actor", ev_t.c.actor.type),
        "request_id": sql.param("request_id", ev_t.c.request_id.type),
        "data": sql.param("data", JSONB),
        "created_at": sql.param("created_at", ev_t.c.created_at.type),
    }
    ev = (
        insert(ev_t)
        .from_select(list(values), select(*values.values()).where(marked()))
        .returning(ev_t.c.id, ev_t.c.sequence, ev_t.c.type, ev_t.c.object_id)
        .cte("ev")
    )
    source = select(
        ws, func.gen_random_uuid(), endpoint_id, ev.c.id, ev.c.sequence, ev.c.type, ev.c.object_id
    )
    return (
        insert(d)
        .from_select(
            ["workspace_id", "id", "endpoint_id", "event_id", "event_sequence", "event_type", "object_id"],
            source,
        )
        .returning(d.c.id)
    )


_INSERT_TEST_EVENT = sql.Query(_insert_test_event)


async def insert_test_event(
    conn: asyncpg.Connection, ws: uuid.UUID, endpoint_id: uuid.UUID, event: dict[str, Any]
) -> uuid.UUID:
    """A ``webhook.test`` event and its one delivery, to this endpoint only."""
    delivery_id: uuid.UUID = await _INSERT_TEST_EVENT.fetchval(
        conn,
        ws=ws,
        event_id=event["id"],
        endpoint_id=endpoint_id,
        actor=event["actor"],
        request_id=event["request_id"],
        data=event["data"],
        created_at=event["created_at"],
    )
    return delivery_id
