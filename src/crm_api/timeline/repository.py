"""The timeline's SQL: one branch per kind of entry, each an index-ordered query of its own, merged by
``UNION ALL`` and cut to one keyset page in the database.

Every branch yields ``(kind, id, at, data)``; a page is ordered by ``(at, id)`` newest first, and each branch
reads at most a page past the cursor, so the cost of a page does not grow with the object's history.
One statement per (parent, kinds, with cursor or not), compiled once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, DateTime, Select, and_, func, literal, select, tuple_, union_all
from sqlalchemy.dialects.postgresql import JSONB, UUID, array

from .. import sql

_OBJECT = sql.param("object_id", UUID)


def _has_object(ids: ColumnElement[Any]) -> ColumnElement[bool]:
    """``ids @> ARRAY[object_id]``: the form the GIN indexes on the id arrays answer."""
    return ids.contains(array([_OBJECT]))


def _object(**fields: ColumnElement[Any]) -> ColumnElement[Any]:
    """``jsonb_build_object('key', value, ...)``."""
    return func.jsonb_build_object(*(part for key, value in fields.items() for part in (key, value)))


class _Branch:
    """One kind's query before its keyset, order and limit: the statement and its (at, id) expressions."""

    __slots__ = ("at", "id", "stmt")

    def __init__(self, stmt: Select[Any], at: ColumnElement[Any], id_: ColumnElement[Any]) -> None:
        self.stmt, self.at, self.id = stmt, at, id_


def _activity(link: str) -> _Branch:
    a = sql.table("activities").alias("a")
    at = func.coalesce(a.c.occurred_at, a.c.created_at)
    data = _object(
        type=a.c.type,
        subject=a.c.subject,
        body=a.c.body,
        direction=a.c.direction,
        due_at=a.c.due_at,
        completed_at=a.c.completed_at,
        owner_id=a.c.owner_id,
    )
    stmt = select(literal("activity").label("kind"), a.c.id, at.label("at"), data.label("data")).where(
        a.c.workspace_id == sql.param("ws"), _has_object(a.c[link]), a.c.archived_at.is_(None)
    )
    return _Branch(stmt, at, a.c.id)


def _stage_change(parent: str) -> _Branch:
    s = sql.table("deal_stage_changes").alias("s")
    d = sql.table("deals").alias("d")
    fs = sql.table("pipeline_stages").alias("fs")
    ts = sql.table("pipeline_stages").alias("ts")
    deals = {
        # a deal's contact_ids always hold its primary contact too
        "contact": _has_object(d.c.contact_ids),
        "company": d.c.company_id == _OBJECT,
        "deal": s.c.deal_id == _OBJECT,
    }[parent]
    data = _object(
        deal_id=s.c.deal_id,
        deal_name=d.c.name,
        pipeline_id=s.c.pipeline_id,
        from_stage_id=s.c.from_stage_id,
        from_stage_name=fs.c.name,
        to_stage_id=s.c.to_stage_id,
        to_stage_name=ts.c.name,
        actor=s.c.actor,
    )
    joined = (
        s.join(d, and_(d.c.workspace_id == s.c.workspace_id, d.c.id == s.c.deal_id))
        .outerjoin(fs, and_(fs.c.workspace_id == s.c.workspace_id, fs.c.id == s.c.from_stage_id))
        .outerjoin(ts, and_(ts.c.workspace_id == s.c.workspace_id, ts.c.id == s.c.to_stage_id))
    )
    stmt = (
        select(literal("stage_change").label("kind"), s.c.id, s.c.changed_at.label("at"), data.label("data"))
        .select_from(joined)
        .where(s.c.workspace_id == sql.param("ws"), deals)
    )
    return _Branch(stmt, s.c.changed_at, s.c.id)


def _ticket(link: str) -> _Branch:
    t = sql.table("tickets").alias("t")
    data = _object(subject=t.c.subject, status=t.c.status, priority=t.c.priority, channel=t.c.channel)
    stmt = select(
        literal("ticket").label("kind"), t.c.id, t.c.created_at.label("at"), data.label("data")
    ).where(t.c.workspace_id == sql.param("ws"), t.c[link] == _OBJECT, t.c.archived_at.is_(None))
    return _Branch(stmt, t.c.created_at, t.c.id)


def _comment(link: str) -> _Branch:
    t = sql.table("tickets").alias("t")
    c = sql.table("ticket_comments").alias("c")
    data = _object(
        ticket_id=c.c.ticket_id,
        ticket_subject=t.c.subject,
        body=c.c.body,
        public=c.c.public,
        author_type=c.c.author_type,
        author_id=c.c.author_id,
    )
    stmt = (
        select(literal("comment").label("kind"), c.c.id, c.c.created_at.label("at"), data.label("data"))
        .select_from(t.join(c, and_(c.c.workspace_id == t.c.workspace_id, c.c.ticket_id == t.c.id)))
        .where(t.c.workspace_id == sql.param("ws"), t.c[link] == _OBJECT)
    )
    return _Branch(stmt, c.c.created_at, c.c.id)


def _field_change(object_type: str) -> _Branch:
    """Field changes come from the event log (kept CRM_EVENT_RETENTION_DAYS): old and new values."""
    e = sql.table("events").alias("e")
    k = func.jsonb_object_keys(e.c.data["previous"]).column_valued("k")
    current = select(
        func.coalesce(func.jsonb_object_agg(k, e.c.data["object"][k]), literal({}, JSONB))
    ).scalar_subquery()
    data = _object(type=e.c.type, actor=e.c.actor, previous=e.c.data["previous"], current=current)
    stmt = select(
        literal("field_change").label("kind"), e.c.id, e.c.created_at.label("at"), data.label("data")
    ).where(
        e.c.workspace_id == sql.param("ws"),
        e.c.object_id == _OBJECT,
        e.c.type.like(f"{object_type}.%"),
    )
    return _Branch(stmt, e.c.created_at, e.c.id)


# What each parent's timeline is made of: kind -> its branch's builder.
BRANCHES: dict[str, dict[str, Callable[[], _Branch]]] = {
    "contact": {
        "activity": lambda: _activity("contact_ids"),
        "stage_change": lambda: _stage_change("contact"),
        "ticket": lambda: _ticket("requester_id"),
        "comment": lambda: _comment("requester_id"),
        "field_change": lambda: _field_change("contact"),
    },
    "company": {
        "activity": lambda: _activity("company_ids"),
        "stage_change": lambda: _stage_change("company"),
        "ticket": lambda: _ticket("company_id"),
        "comment": lambda: _comment("company_id"),
        "field_change": lambda: _field_change("company"),
    },
    "deal": {
        "activity": lambda: _activity("deal_ids"),
        "stage_change": lambda: _stage_change("deal"),
        "field_change": lambda: _field_change("deal"),
    },
}
KINDS = ("activity", "stage_change", "ticket", "comment", "field_change")


@sql.shape
def _page(parent: str, kinds: tuple[str, ...], with_cursor: bool) -> Select[Any]:
    limit = sql.param("limit")
    parts = []
    for kind in kinds:
        branch = BRANCHES[parent][kind]()
        stmt = branch.stmt
        if with_cursor:
            cursor = tuple_(sql.param("after_at", DateTime(timezone=True)), sql.param("after_id", UUID))
            stmt = stmt.where(tuple_(branch.at, branch.id) < cursor)
        parts.append(stmt.order_by(branch.at.desc(), branch.id.desc()).limit(limit))
    x = union_all(*parts).subquery("x")
    return select(x.c.kind, x.c.id, x.c.at, x.c.data).order_by(x.c.at.desc(), x.c.id.desc()).limit(limit)


async def page(
    conn: asyncpg.Pool | asyncpg.Connection,
    parent: str,
    workspace_id: uuid.UUID,
    object_id: uuid.UUID,
    kinds: list[str],
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """``limit + 1`` entries newest first (the extra one tells the caller there is more)."""
    params: dict[str, Any] = {"ws": workspace_id, "object_id": object_id, "limit": int(limit) + 1}
    if after is not None:
        params["after_at"], params["after_id"] = after
    stmt = _page(parent, tuple(kinds), after is not None)
    return [dict(r) for r in await stmt.fetch(conn, **params)]
