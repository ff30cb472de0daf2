"""Segments' SQL: membership pages, an object's segments, the history, and the one way membership
changes (members, their history rows, the segment's count and the ``segment.member_*`` events with their
deliveries, in the caller's transaction)."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, Select, Text, and_, any_, delete, func, literal, select, true, union_all
from sqlalchemy.dialects.postgresql import ARRAY, UUID, array, insert
from sqlalchemy.sql.dml import ReturningDelete, ReturningInsert

from .. import locks, sql
from ..events.emit import Actor
from ..events.store import events_cte, fanout, recordset
from ..ids import uuid7
from ..resources.exprs import Expr, Params
from ..resources.spec import REGISTRY

TABLE_OF = {"contact": "contacts", "company": "companies", "deal": "deals"}
_IDS = ARRAY(UUID(as_uuid=True))


def _members_page(after: bool) -> Select[Any]:
    m = sql.table("segment_members")
    where = [m.c.workspace_id == sql.param("ws"), m.c.segment_id == sql.param("segment_id")]
    if after:
        where.append(m.c.object_id > sql.param("after", UUID(as_uuid=True)))
    return (
        select(m.c.segment_id, m.c.object_id, m.c.added_at, m.c.reason)
        .where(*where)
        .order_by(m.c.object_id)
        .limit(sql.param("limit"))
    )


_MEMBERS = {after: sql.Query(functools.partial(_members_page, after)) for after in (False, True)}


async def members(
    conn: Any, ws: uuid.UUID, segment_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> list[dict[str, Any]]:
    """``limit + 1`` members in object id order after ``after``: a keyset page of the primary key."""
    query = _MEMBERS[after is not None]
    values: dict[str, Any] = {"ws": ws, "segment_id": segment_id, "limit": limit + 1}
    if after is not None:
        values["after"] = after
    return [dict(r) for r in await query.fetch(conn, **values)]


def _changes_page(before: bool) -> Select[Any]:
    c = sql.table("segment_changes")
    where = [c.c.workspace_id == sql.param("ws"), c.c.segment_id == sql.param("segment_id")]
    if before:
        where.append(c.c.id < sql.param("before", UUID(as_uuid=True)))
    return (
        select(c.c.id, c.c.segment_id, c.c.object_id, c.c.change, c.c.reason, c.c.created_at)
        .where(*where)
        .order_by(c.c.id.desc())
        .limit(sql.param("limit"))
    )


_CHANGES = {before: sql.Query(functools.partial(_changes_page, before)) for before in (False, True)}


async def changes(
    conn: Any, ws: uuid.UUID, segment_id: uuid.UUID, before: uuid.UUID | None, limit: int
) -> list[dict[str, Any]]:
    """``limit + 1`` history entries, newest first (their ids are UUIDv7s, so in time order)."""
    values: dict[str, Any] = {"ws": ws, "segment_id": segment_id, "limit": limit + 1}
    if before is not None:
        values["before"] = before
    return [dict(r) for r in await _CHANGES[before is not None].fetch(conn, **values)]


def _object_segments() -> Select[Any]:
    s, m = sql.table("segments"), sql.table("segment_members")
    spec = REGISTRY["segments"]
    return (
        select(*sql.columns(spec.columns, s))
        .join(m, and_(m.c.workspace_id == s.c.workspace_id, m.c.segment_id == s.c.id))
        .where(
            m.c.workspace_id == sql.param("ws"),
            m.c.object_id == sql.param("object_id", UUID(as_uuid=True)),
            s.c.object_type == sql.param("object_type", Text),
            s.c.archived_at.is_(None),
        )
        .order_by(s.c.created_at, s.c.id)
    )


_OBJECT_SEGMENTS = sql.Query(_object_segments)


async def object_segments(conn: Any, ws: uuid.UUID, object_type: str, oid: uuid.UUID) -> list[dict[str, Any]]:
    rows = await _OBJECT_SEGMENTS.fetch(conn, ws=ws, object_type=object_type, object_id=oid)
    return [dict(r) for r in rows]


@sql.shape
def _live_ids(table: str) -> Select[Any]:
    t = sql.table(table)
    return select(t.c.id).where(
        t.c.workspace_id == sql.param("ws"), t.c.id == any_(sql.param("ids", _IDS)), t.c.archived_at.is_(None)
    )


async def live_ids(conn: Any, ws: uuid.UUID, object_type: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    rows = await _live_ids(TABLE_OF[object_type]).fetch(conn, ws=ws, ids=list(ids))
    return {r["id"] for r in rows}


def _add() -> ReturningInsert[Any]:
    """Members of several segments: rows of (segment, object, reason) from three arrays."""
    m = sql.table("segment_members")
    wanted = (
        func.unnest(sql.param("sids", _IDS), sql.param("ids", _IDS), sql.param("reasons", ARRAY(Text)))
        .table_valued("segment_id", "object_id", "reason")
        .render_derived(name="wanted")
    )
    rows = select(sql.param("ws"), wanted.c.segment_id, wanted.c.object_id, wanted.c.reason)
    return (
        insert(m)
        .from_select(["workspace_id", "segment_id", "object_id", "reason"], rows)
        .on_conflict_do_nothing()
        .returning(m.c.segment_id, m.c.object_id)
    )


def _remove() -> ReturningDelete[Any]:
    m = sql.table("segment_members")
    gone = (
        func.unnest(sql.param("sids", _IDS), sql.param("ids", _IDS))
        .table_valued("segment_id", "object_id")
        .render_derived(name="gone")
    )
    return (
        delete(m)
        .where(
            m.c.workspace_id == sql.param("ws"),
            m.c.segment_id == gone.c.segment_id,
            m.c.object_id == gone.c.object_id,
        )
        .returning(m.c.segment_id, m.c.object_id)
    )


def _record() -> Any:
    """The changes' history rows, the segments' counts and the events with their deliveries."""
    s, c = sql.table("segments"), sql.table("segment_changes")
    ev = events_cte("events", lambda e: true())
    rows = recordset("changes", "segment_changes", "changed")
    history = (
        insert(c)
        .from_select([col.name for col in c.columns], select(*(rows.c[col.name] for col in c.columns)))
        .cte("history")
    )
    deltas = (
        func.unnest(sql.param("counted", _IDS), sql.param("deltas", ARRAY(BigInteger)))
        .table_valued("segment_id", "delta")
        .render_derived(name="deltas")
    )
    counted = (
        s.update()
        .where(s.c.workspace_id == sql.param("ws"), s.c.id == deltas.c.segment_id)
        .values(member_count=s.c.member_count + deltas.c.delta)
        .cte("counted")
    )
    return fanout(ev).add_cte(history, counted)


_ADD, _REMOVE, _RECORD = sql.Query(_add), sql.Query(_remove), sql.Query(_record)


async def lock_segment(conn: asyncpg.Connection, ws: uuid.UUID, *segment_ids: uuid.UUID) -> None:
    """One writer of a segment's membership at a time (a worker and a client, two workers); several
    segments in one statement, in a fixed order (no deadlock between two workers)."""
    await locks.lock_keys(conn, [locks.key_lock(ws, "segment", str(sid)) for sid in segment_ids])


async def change(
    conn: asyncpg.Connection,
    actor: Actor,
    segment: dict[str, Any],
    added: dict[uuid.UUID, str],
    removed: dict[uuid.UUID, str],
    causes: Mapping[uuid.UUID, str] | None = None,
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Add and remove members (object id -> reason) of one segment: ``change_many``. Returns (added,
    removed) ids."""
    sid = segment["id"]
    done_add, done_remove = await change_many(
        conn,
        actor,
        {sid: segment},
        {(sid, oid): reason for oid, reason in added.items()},
        {(sid, oid): reason for oid, reason in removed.items()},
        causes,
    )
    return [oid for _, oid in done_add], [oid for _, oid in done_remove]


Pair = tuple[uuid.UUID, uuid.UUID]
"""(segment id, object id)."""


async def change_many(
    conn: asyncpg.Connection,
    actor: Actor,
    segments: Mapping[uuid.UUID, dict[str, Any]],
    added: dict[Pair, str],
    removed: dict[Pair, str],
    causes: Mapping[uuid.UUID, str] | None = None,
) -> tuple[list[Pair], list[Pair]]:
    """Add and remove members of ``segments`` ((segment id, object id) -> reason), in the caller's
    transaction, holding the segments' locks, in three statements whatever the number of segments; what
    actually changed gets its history row and event. ``causes``: the ``request_id`` an object's event
    carries instead of the actor's (the automation run whose change moved it in or out of a dynamic
    segment, so a chain of automations is followed through the segment). Returns (added, removed)."""
    ws = actor.workspace_id
    done_add: list[Pair] = []
    done_remove: list[Pair] = []
    if added:
        keys = list(added)
        rows = await _ADD.fetch(
            conn,
            ws=ws,
            sids=[k[0] for k in keys],
            ids=[k[1] for k in keys],
            reasons=[added[k] for k in keys],
        )
        done_add = [(r["segment_id"], r["object_id"]) for r in rows]
    if removed:
        keys = list(removed)
        rows = await _REMOVE.fetch(conn, ws=ws, sids=[k[0] for k in keys], ids=[k[1] for k in keys])
        done_remove = [(r["segment_id"], r["object_id"]) for r in rows]
    if not done_add and not done_remove:
        return done_add, done_remove
    at = dt.datetime.now(dt.UTC)
    objects: dict[uuid.UUID, dict[str, Any]] = {}
    deltas: dict[uuid.UUID, int] = {}
    actor_name, request_id = actor.principal.actor, actor.request_id
    events: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    for kind, done, reasons, step in (("added", done_add, added, 1), ("removed", done_remove, removed, -1)):
        type_ = f"segment.member_{kind}"
        for pair in done:
            sid, oid = pair
            segment = segments[sid]
            obj = objects.get(sid)
            if obj is None:
                obj = objects[sid] = REGISTRY["segments"].to_api(segment)
            deltas[sid] = deltas.get(sid, 0) + step
            reason = reasons[pair]
            eid = uuid7()
            events.append(
                {
                    "workspace_id": ws,
                    "id": eid,
                    "type": type_,
                    "object_type": "segment",
                    "object_id": sid,
                    "actor": actor_name,
                    "request_id": causes.get(oid, request_id) if causes else request_id,
                    "data": {
                        "object": obj,
                        "previous": {},
                        "segment_id": sid,
                        "object_type": segment["object_type"],
                        "object_id": oid,
                        "reason": reason,
                    },
                    "created_at": at,
                }
            )
            history.append(
                {
                    "workspace_id": ws,
                    "id": eid,
                    "segment_id": sid,
                    "object_id": oid,
                    "change": kind,
                    "reason": reason,
                    "created_at": at,
                }
            )
    counted = [sid for sid, delta in deltas.items() if delta]
    await _RECORD.execute(
        conn,
        ws=ws,
        events=events,
        changes=history,
        counted=counted,
        deltas=[deltas[sid] for sid in counted],
    )
    return done_add, done_remove


def evaluation(object_type: str, condition: Expr, scoped: bool, ranged: bool = False) -> Select[Any]:
    """What differs between a dynamic segment's members and the live objects its filter matches: rows of
    (object_id, add, archived, merged). ``scoped``: among the ``ids`` only (a batch of touched records);
    ``ranged``: among the object ids in (``lo``, ``hi``] (a build's chunk, an index range of both the
    object table and the members); otherwise the whole object type (the periodic pass)."""
    t = sql.table(TABLE_OF[object_type])
    m = sql.table("segment_members")
    ws, sid = sql.param("ws"), sql.param("segment_id", UUID(as_uuid=True))
    match_where = [t.c.workspace_id == ws, t.c.archived_at.is_(None), condition.build()]
    held_where = [m.c.workspace_id == ws, m.c.segment_id == sid]
    if scoped:
        ids = sql.param("ids", _IDS)
        match_where.append(t.c.id == any_(ids))
        held_where.append(m.c.object_id == any_(ids))
    if ranged:
        lo, hi = sql.param("lo", UUID(as_uuid=True)), sql.param("hi", UUID(as_uuid=True))
        match_where += [t.c.id > lo, t.c.id <= hi]
        held_where += [m.c.object_id > lo, m.c.object_id <= hi]
    matched = select(t.c.id).where(*match_where).cte("matched")
    held = select(m.c.object_id).where(*held_where).cte("held")
    entering = select(
        matched.c.id, true().label("add"), literal(False).label("archived"), literal(False).label("merged")
    ).where(matched.c.id.not_in(select(held.c.object_id)))
    gone = t.alias("gone")
    merged = gone.c.merged_into.is_not(None) if "merged_into" in gone.c else literal(False)
    leaving = (
        select(
            held.c.object_id,
            literal(False).label("add"),
            func.coalesce(gone.c.archived_at.is_not(None), False).label("archived"),
            func.coalesce(merged, False).label("merged"),
        )
        .select_from(held.outerjoin(gone, and_(gone.c.workspace_id == ws, gone.c.id == held.c.object_id)))
        .where(held.c.object_id.not_in(select(matched.c.id)))
    )
    return union_all(entering, leaving)  # type: ignore[return-value]


EVALUATIONS = sql.Shapes(1024)


async def evaluate(
    conn: Any,
    object_type: str,
    condition: Expr,
    params: Params,
    segment_id: uuid.UUID,
    ids: Sequence[uuid.UUID] | None,
    span: tuple[uuid.UUID, uuid.UUID] | None = None,
) -> list[Any]:
    """Run ``evaluation`` for a segment whose filter compiled to ``condition`` with ``params`` (``span``:
    the object ids in (lo, hi] only)."""
    scoped, ranged = ids is not None, span is not None
    key = ("segment_eval", object_type, condition.key, scoped, ranged)
    statement = EVALUATIONS.get(key, lambda: evaluation(object_type, condition, scoped, ranged))
    values = dict(params.values, segment_id=segment_id)
    if ids is not None:
        values["ids"] = list(ids)
    if span is not None:
        values["lo"], values["hi"] = span
    return list(await statement.fetch(conn, **values))


def evaluation_many(object_type: str, conditions: Sequence[Expr]) -> Select[Any]:
    """``evaluation`` of several dynamic segments of one object type among the ``ids``, in one statement:
    each touched live object is read once and every segment's condition evaluated on it
    (``unnest(ARRAY[c1, c2, ...]) WITH ORDINALITY``: the n-th condition is segment ``sids[n]``), the
    matches diffed against the members those segments hold among the ids. Rows of (segment_id,
    object_id, add, archived, merged)."""
    t = sql.table(TABLE_OF[object_type])
    m = sql.table("segment_members")
    ws, ids, sids = sql.param("ws"), sql.param("ids", _IDS), sql.param("sids", _IDS)
    hits = (
        func.unnest(array([c.build() for c in conditions]))
        .table_valued("hit", with_ordinality="ord")
        .render_derived(name="hits")
    )
    segs = func.unnest(sids).table_valued("segment_id", with_ordinality="ord").render_derived(name="segs")
    matched = (
        select(segs.c.segment_id, t.c.id.label("object_id"))
        .select_from(t.join(hits, hits.c.hit).join(segs, segs.c.ord == hits.c.ord))
        .where(t.c.workspace_id == ws, t.c.id == any_(ids), t.c.archived_at.is_(None))
        .cte("matched")
    )
    held = (
        select(m.c.segment_id, m.c.object_id)
        .where(m.c.workspace_id == ws, m.c.segment_id == any_(sids), m.c.object_id == any_(ids))
        .cte("held")
    )
    same = and_(held.c.segment_id == matched.c.segment_id, held.c.object_id == matched.c.object_id)
    entering = select(
        matched.c.segment_id,
        matched.c.object_id,
        true().label("add"),
        literal(False).label("archived"),
        literal(False).label("merged"),
    ).where(~select(held.c.object_id).where(same).exists())
    gone = t.alias("gone")
    merged = gone.c.merged_into.is_not(None) if "merged_into" in gone.c else literal(False)
    leaving = (
        select(
            held.c.segment_id,
            held.c.object_id,
            literal(False).label("add"),
            func.coalesce(gone.c.archived_at.is_not(None), False).label("archived"),
            func.coalesce(merged, False).label("merged"),
        )
        .select_from(held.outerjoin(gone, and_(gone.c.workspace_id == ws, gone.c.id == held.c.object_id)))
        .where(~select(matched.c.object_id).where(same).exists())
    )
    return union_all(entering, leaving)  # type: ignore[return-value]


async def evaluate_many(
    conn: Any,
    object_type: str,
    conditions: Sequence[Expr],
    params: Params,
    segment_ids: Sequence[uuid.UUID],
    ids: Sequence[uuid.UUID],
) -> list[Any]:
    """Run ``evaluation_many`` for segments whose filters compiled to ``conditions`` (one ``params`` for
    all), ``segment_ids[n]`` the segment of ``conditions[n]``. The statement is compiled once per set of
    condition shapes (the segments' filters, in order), so a step of unchanged segments reuses it."""
    key = ("segment_eval_many", object_type, tuple(c.key for c in conditions))
    statement = EVALUATIONS.get(key, lambda: evaluation_many(object_type, conditions))
    values = dict(params.values, sids=list(segment_ids), ids=list(ids))
    return list(await statement.fetch(conn, **values))
