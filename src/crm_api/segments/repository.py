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
from sqlalchemy import (
    BigInteger,
    DateTime,
    Select,
    Text,
    and_,
    any_,
    case,
    delete,
    func,
    literal,
    literal_column,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, array, insert

from .. import locks, sql
from ..events.emit import Actor
from ..events.store import EVENT_FIELDS, fanout, marked
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


def _change() -> Select[Any]:
    """Every change of a step in one statement: the wanted entries and exits (``unnest`` of arrays, one
    row per (segment, object)), the member rows inserted and deleted, and for those that did change their
    history row, their ``segment.member_*`` event with its deliveries, and the segments' counts. Returns
    what changed.

    The event is light (~250 bytes): ``data.object`` is the segment's reference (``id``, ``object``,
    ``name``, given once per segment in ``refs``), not its whole object, beside ``segment_id``,
    ``object_type`` (from ``types``), ``object_id`` and ``reason``."""
    m, s, c = sql.table("segment_members"), sql.table("segments"), sql.table("segment_changes")
    ws, at = sql.param("ws"), sql.param("at", DateTime(timezone=True))
    wanted = (
        func.unnest(
            sql.param("sids", _IDS),
            sql.param("ids", _IDS),
            sql.param("changes", ARRAY(Text)),
            sql.param("reasons", ARRAY(Text)),
            sql.param("request_ids", ARRAY(Text)),
        )
        .table_valued("segment_id", "object_id", "change", "reason", "request_id", with_ordinality="ord")
        .render_derived(name="wanted")
    )
    # the n-th change's id (its event's and history row's): the slice's first id counted up n - 1, made
    # here from its two halves (``_first_id``), so no UUID per change is made in Python and sent
    low = sql.param("id_low", BigInteger) + wanted.c.ord - sql.const(1)
    hexed = sql.param("id_high", Text).concat(func.lpad(func.to_hex(low), sql.const(16), sql.const("0")))
    eid = func.cast(hexed, UUID(as_uuid=True))
    rows = select(
        eid.label("id"),
        wanted.c.segment_id,
        wanted.c.object_id,
        wanted.c.change,
        wanted.c.reason,
        wanted.c.request_id,
        wanted.c.ord,
    ).cte("rows")
    entering = select(ws, rows.c.segment_id, rows.c.object_id, rows.c.reason).where(rows.c.change == "added")
    added = (
        insert(m)
        .from_select(["workspace_id", "segment_id", "object_id", "reason"], entering)
        .on_conflict_do_nothing()
        .returning(m.c.segment_id, m.c.object_id)
        .cte("added")
    )
    removed = (
        delete(m)
        .where(
            m.c.workspace_id == ws,
            m.c.segment_id == rows.c.segment_id,
            m.c.object_id == rows.c.object_id,
            rows.c.change == "removed",
        )
        .returning(m.c.segment_id, m.c.object_id)
        .cte("removed")
    )

    def of(done: Any, change: str) -> Select[Any]:
        same = and_(rows.c.segment_id == done.c.segment_id, rows.c.object_id == done.c.object_id)
        return select(rows).select_from(rows.join(done, same)).where(rows.c.change == change)

    done = union_all(of(added, "added"), of(removed, "removed")).cte("done")
    refs, types, sid = sql.param("refs", JSONB), sql.param("types", JSONB), func.cast(done.c.segment_id, Text)
    data = func.jsonb_build_object(
        "object",
        func.jsonb_extract_path(refs, sid),
        "previous",
        literal_column("'{}'::jsonb"),
        "segment_id",
        done.c.segment_id,
        "object_type",
        func.jsonb_extract_path(types, sid),
        "object_id",
        done.c.object_id,
        "reason",
        done.c.reason,
    )
    e = sql.table("events")
    made = (
        select(
            ws,
            done.c.id,
            literal("segment.member_").concat(done.c.change),
            literal("segment"),
            done.c.segment_id,
            sql.param("actor", Text),
            done.c.request_id,
            data,
            at,
        )
        .where(marked())
        .order_by(done.c.ord)
    )
    ev = (
        insert(e)
        .from_select(list(EVENT_FIELDS), made)
        .returning(e.c.id, e.c.sequence, e.c.type, e.c.object_id)
        .cte("ev")
    )
    history_rows = select(
        ws, done.c.id, done.c.segment_id, done.c.object_id, done.c.change, done.c.reason, at
    ).order_by(done.c.ord)
    history = insert(c).from_select([col.name for col in c.columns], history_rows).cte("history")
    step = case((done.c.change == "added", 1), else_=-1)
    deltas = (
        select(done.c.segment_id, func.sum(step).label("delta"))
        .group_by(done.c.segment_id)
        .subquery("deltas")
    )
    counted = (
        s.update()
        .where(s.c.workspace_id == ws, s.c.id == deltas.c.segment_id, deltas.c.delta != 0)
        .values(member_count=s.c.member_count + deltas.c.delta)
        .cte("counted")
    )
    deliveries = fanout(ev).cte("deliveries")
    return (
        select(done.c.change, done.c.segment_id, done.c.object_id)
        .add_cte(history, counted, deliveries)
        .order_by(done.c.ord)
    )


_CHANGE = sql.Query(_change)
_SETTINGS = "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL work_mem = '32MB'"


async def step_settings(conn: asyncpg.Connection) -> None:
    """For the rest of the caller's transaction: plans made for each execution's own parameters, and room
    to sort a step's events in memory. A prepared statement run more than five times may switch to a
    generic plan, and the generic plans of ``_change`` and ``evaluation_many`` (arrays of unknown length,
    statistics that lag tables growing by thousands of rows a second) cost several times their custom
    ones (measured: a step of 500 writes, 25,000 changes, 2.5 s of PostgreSQL CPU with custom plans,
    8 s with the generic one)."""
    await conn.execute(_SETTINGS)


CHANGE_SLICE = 5000
"""Changes written per statement."""


def _first_id() -> tuple[str, int]:
    """A UUIDv7 of this millisecond as its high 64 bits in hex and its low 64 bits as a signed bigint:
    ``_change`` counts the low half up, one id per change (the random bits counted up, so a step's ids
    increase in its order and cost one draw; making a ``uuid.UUID`` per change was most of a step's Python
    time with many entries)."""
    base = uuid7().int
    low = base & ((1 << 64) - 1)
    return f"{base >> 64:016x}", low - (1 << 64) if low >= 1 << 63 else low


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


def reference(segment: Mapping[str, Any]) -> dict[str, Any]:
    """What a ``segment.member_*`` event holds as ``data.object``: the segment's id, ``object`` and name
    (``schemas.SegmentReference``)."""
    return {"id": str(segment["id"]), "object": "segment", "name": segment["name"]}


async def change_many(
    conn: asyncpg.Connection,
    actor: Actor,
    segments: Mapping[uuid.UUID, dict[str, Any]],
    added: dict[Pair, str],
    removed: dict[Pair, str],
    causes: Mapping[uuid.UUID, str] | None = None,
) -> tuple[list[Pair], list[Pair]]:
    """Add and remove members of ``segments`` ((segment id, object id) -> reason), in the caller's
    transaction, holding the segments' locks, in one statement whatever the number of segments
    (``_change``); what actually changed gets its history row and event. ``causes``: the ``request_id``
    an object's event carries instead of the actor's (the automation run whose change moved it in or out
    of a dynamic segment, so a chain of automations is followed through the segment). Returns (added,
    removed)."""
    ws = actor.workspace_id
    if not added and not removed:
        return [], []
    keys = [*added, *removed]
    changes = ["added"] * len(added) + ["removed"] * len(removed)
    reasons = [*added.values(), *removed.values()]
    request_id = actor.request_id
    request_ids = [causes.get(k[1], request_id) for k in keys] if causes else [request_id] * len(keys)
    # each changed segment's reference and object type, once: the events are built from them in SQL
    changed = {k[0] for k in keys}
    refs = {str(sid): reference(segments[sid]) for sid in changed}
    types = {str(sid): segments[sid]["object_type"] for sid in changed}
    (high, low), at, name = _first_id(), dt.datetime.now(dt.UTC), actor.principal.actor
    rows: list[Any] = []
    await step_settings(conn)
    # in slices, so no statement grows with the step (a step of 2,000 writes entering 50 segments each
    # is 100,000 changes); the same transaction, so the step still commits whole
    for lo in range(0, len(keys), CHANGE_SLICE):
        part = slice(lo, lo + CHANGE_SLICE)
        rows += await _CHANGE.fetch(
            conn,
            ws=ws,
            at=at,
            actor=name,
            id_high=high,
            id_low=low + lo,
            sids=[k[0] for k in keys[part]],
            ids=[k[1] for k in keys[part]],
            changes=changes[part],
            reasons=reasons[part],
            request_ids=request_ids[part],
            refs=refs,
            types=types,
        )
    done_add = [(r["segment_id"], r["object_id"]) for r in rows if r["change"] == "added"]
    done_remove = [(r["segment_id"], r["object_id"]) for r in rows if r["change"] == "removed"]
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
    # per touched id, its live object (a primary key look-up) with every condition evaluated on it: a
    # LATERAL that the OFFSET keeps from being flattened into a join, so the plan cannot turn into a scan
    # of the workspace's objects filtered by the ids (it did, on statistics that lagged a growing table)
    touched = func.unnest(ids).table_valued("id").render_derived(name="touched")
    live = (
        select(t.c.id, array([c.build() for c in conditions]).label("hits"))
        .where(t.c.workspace_id == ws, t.c.id == touched.c.id, t.c.archived_at.is_(None))
        .offset(sql.const(0))
        .lateral("live")
    )
    hits = func.unnest(live.c.hits).table_valued("hit", with_ordinality="ord").render_derived(name="hits")
    segs = func.unnest(sids).table_valued("segment_id", with_ordinality="ord").render_derived(name="segs")
    matched = (
        select(segs.c.segment_id, live.c.id.label("object_id"))
        .select_from(touched.join(live, true()).join(hits, hits.c.hit).join(segs, segs.c.ord == hits.c.ord))
        .cte("matched")
    )
    # per touched id, its memberships (an index range of (workspace_id, object_id)), a LATERAL kept so
    # likewise (with a generic plan on lagging statistics, it had turned into a scan of all the
    # workspace's memberships)
    of_object = (
        select(m.c.segment_id, m.c.object_id)
        .where(m.c.workspace_id == ws, m.c.object_id == touched.c.id, m.c.segment_id == any_(sids))
        .offset(sql.const(0))
        .lateral("of_object")
    )
    held = (
        select(of_object.c.segment_id, of_object.c.object_id)
        .select_from(touched.join(of_object, true()))
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
