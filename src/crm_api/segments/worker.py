"""Dynamic segments kept current by ``crm-api worker`` processes, never in the API's write transaction.

Three jobs, each taking the segment's advisory lock before it evaluates, so any number of workers may run
them side by side and each evaluation sees every change committed before it:

- **follow**: per workspace with segments, read its events after the workspace's cursor (up to the feed's
  bound, ``events/horizon.py``, so no event committing late is passed), collect the contacts, companies
  and deals they touched (plus the contacts and deals of touched companies, and the deals of touched
  contacts, when a segment filters through that relation), and re-evaluate them against every dynamic
  segment of their type in one statement per object type (``repository.evaluation_many``), whose entries
  and exits are written in one more (``repository.change_many``); static segments lose members that were
  archived, merged or erased. The changes and the cursor's advance commit together, in
  one transaction holding the cursor's row lock (a second worker skips that workspace meanwhile).
- **build**: a new, edited or restored dynamic segment (``status: building``) is walked in object id
  order, ``segment_build_chunk`` ids per transaction, its position kept in ``segment_builds`` (a killed
  worker's successor resumes there; an edit bumps the version and the walk starts over), and marked ready
  by its last chunk. A chunk failing ``segment_build_attempts`` times in a row marks the segment ``failed``.
- **relative**: every ``segment_relative_seconds``, segments whose filter holds a relative time are
  evaluated whole, so members leave as they age out.

Every entry and exit is written by ``repository.change_many``: the member row, a history row and a
``segment.member_*`` event with its deliveries, in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, Select, Text, and_, any_, case, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert
from sqlalchemy.sql.dml import ReturningUpdate

from .. import db, jsonutil, sql
from ..auth import SystemContext
from ..config import Settings
from ..events import horizon
from ..events.chain import depth_of
from ..resources import relative_time
from ..resources.custom_fields import enforce as custom_fields
from ..resources.exprs import Expr, Params
from ..resources.spec import REGISTRY
from . import repository as repo
from .spec import SEGMENTS, compile_filter

log = logging.getLogger("crm_api.segments")
_IDS = ARRAY(UUID(as_uuid=True))
BATCH = 2000
"""Events of contacts, companies and deals read per workspace per step."""
BUILD_CHUNK = 2000
"""Object ids a build evaluates per transaction (``segment_build_chunk``)."""
BUILD_ATTEMPTS = 5
"""Failed chunks in a row before a build gives up (``segment_build_attempts``)."""
_NIL = uuid.UUID(int=0)
_MAX = uuid.UUID(int=(1 << 128) - 1)


def _workspaces() -> Select[Any]:
    s = sql.table("segments")
    return select(s.c.workspace_id).where(s.c.archived_at.is_(None)).distinct()


def _start_cursor() -> Any:
    """A workspace's first cursor: just before its first ``segment.created`` still held (earlier events
    cannot matter: a segment's build reads the state they left), or its oldest event."""
    e, c = sql.table("events"), sql.table("segment_cursors")
    ws = sql.param("ws")
    first = select(func.min(e.c.sequence)).where(e.c.workspace_id == ws, e.c.type == "segment.created")
    oldest = select(func.min(e.c.sequence)).where(e.c.workspace_id == ws)
    start = func.coalesce(first.scalar_subquery(), oldest.scalar_subquery(), sql.const(1)) - sql.const(1)
    return insert(c).from_select(["workspace_id", "sequence"], select(ws, start)).on_conflict_do_nothing()


def _claim_cursor() -> Select[Any]:
    c = sql.table("segment_cursors")
    return select(c.c.sequence).where(c.c.workspace_id == sql.param("ws")).with_for_update(skip_locked=True)


_MERGES = ("contact.merged", "company.merged")


def _events() -> Select[Any]:
    e = sql.table("events")
    return (
        select(
            e.c.sequence,
            e.c.type,
            e.c.object_type,
            e.c.object_id,
            e.c.request_id,
            # the payload only where it names merged ids: other events' rows are read by their columns
            case((or_(*(e.c.type == t for t in _MERGES)), e.c.data["merged"])).label("merged"),
        )
        .where(
            e.c.workspace_id == sql.param("ws"),
            e.c.sequence > sql.param("after", BigInteger),
            e.c.sequence <= sql.param("bound", BigInteger),
            # only the objects segments hold: the step's own segment.member_* events (tens per write
            # with many segments) would otherwise fill its batch and make it read them back
            or_(*(e.c.object_type == kind for kind in repo.TABLE_OF)),
        )
        .order_by(e.c.sequence)
        .limit(sql.const(BATCH))
    )


def _advance() -> Any:
    c = sql.table("segment_cursors")
    return (
        update(c)
        .where(c.c.workspace_id == sql.param("ws"))
        .values(sequence=sql.param("sequence", BigInteger))
    )


def _live() -> Select[Any]:
    """A workspace's live segments, with what a step needs of them (its events name only the id and name),
    static ones too: a step without static segments of a type skips their exits' look-up."""
    s = sql.table("segments")
    # in a fixed order: a step's evaluation statement is cached by its segments' filters in this order
    return (
        select(s.c.id, s.c.object_type, s.c.kind, s.c.filter, s.c.name)
        .where(s.c.workspace_id == sql.param("ws"), s.c.archived_at.is_(None))
        .order_by(s.c.id)
    )


@sql.shape
def _related(table: str, fk: str) -> Select[Any]:
    t = sql.table(table)
    return select(t.c.id).where(t.c.workspace_id == sql.param("ws"), t.c[fk] == any_(sql.param("ids", _IDS)))


def _segment_by_id() -> Select[Any]:
    s = sql.table("segments")
    return select(*sql.columns(SEGMENTS.columns, s)).where(
        s.c.workspace_id == sql.param("ws"), s.c.id == sql.param("id", UUID(as_uuid=True))
    )


def _building() -> Select[Any]:
    s = sql.table("segments")
    return (
        select(s.c.workspace_id, s.c.id)
        .where(s.c.status == "building", s.c.kind == "dynamic", s.c.archived_at.is_(None))
        .order_by(s.c.updated_at)
        .limit(sql.const(20))
    )


def _ready() -> ReturningUpdate[Any]:
    s = sql.table("segments")
    return (
        update(s)
        .where(
            s.c.workspace_id == sql.param("ws"),
            s.c.id == sql.param("id", UUID(as_uuid=True)),
            s.c.version == sql.param("version"),
            s.c.status == "building",
        )
        .values(status="ready")
        .returning(s.c.id)
    )


def _relative() -> Select[Any]:
    s = sql.table("segments")
    # ready ones only: a building segment's walk evaluates it, a failed one waits for an edit
    return select(s.c.workspace_id, s.c.id, s.c.filter).where(
        s.c.kind == "dynamic", s.c.archived_at.is_(None), s.c.status == "ready"
    )


_WORKSPACES, _START, _CLAIM, _EVENTS = (
    sql.Query(_workspaces),
    sql.Query(_start_cursor),
    sql.Query(_claim_cursor),
    sql.Query(_events),
)
_ADVANCE, _LIVE, _SEGMENT = sql.Query(_advance), sql.Query(_live), sql.Query(_segment_by_id)
_BUILDING, _READY, _RELATIVE = sql.Query(_building), sql.Query(_ready), sql.Query(_relative)


@sql.shape
def _chunk_ids(table: str) -> Select[Any]:
    """The next ``limit`` object ids after ``after``, archived ones too (their memberships end)."""
    t = sql.table(table)
    return (
        select(t.c.id)
        .where(t.c.workspace_id == sql.param("ws"), t.c.id > sql.param("after", UUID(as_uuid=True)))
        .order_by(t.c.id)
        .limit(sql.param("limit"))
    )


def _build_state() -> Select[Any]:
    b = sql.table("segment_builds")
    return select(b.c.version, b.c.after).where(
        b.c.workspace_id == sql.param("ws"), b.c.segment_id == sql.param("id", UUID(as_uuid=True))
    )


def _build_at() -> Any:
    """The position after a chunk; a new version's first chunk resets the failures counted."""
    b = sql.table("segment_builds")
    version, after = sql.param("version"), sql.param("after", UUID(as_uuid=True))
    row = select(sql.param("ws"), sql.param("id", UUID(as_uuid=True)), version, after, sql.const(0))
    ins = insert(b).from_select(["workspace_id", "segment_id", "version", "after", "failures"], row)
    return ins.on_conflict_do_update(
        index_elements=[b.c.workspace_id, b.c.segment_id],
        set_={"version": ins.excluded.version, "after": ins.excluded.after, "failures": 0, "error": None},
    )


def _build_done() -> Any:
    b = sql.table("segment_builds")
    return delete(b).where(
        b.c.workspace_id == sql.param("ws"), b.c.segment_id == sql.param("id", UUID(as_uuid=True))
    )


def _failed() -> Any:
    """One more failure of the segment's build (its position kept); the failures in a row."""
    s, b = sql.table("segments"), sql.table("segment_builds")
    ws, sid = sql.param("ws"), sql.param("id", UUID(as_uuid=True))
    row = select(s.c.workspace_id, s.c.id, s.c.version, sql.const(1), sql.param("error", Text)).where(
        s.c.workspace_id == ws, s.c.id == sid
    )
    ins = insert(b).from_select(["workspace_id", "segment_id", "version", "failures", "error"], row)
    return ins.on_conflict_do_update(
        index_elements=[b.c.workspace_id, b.c.segment_id],
        set_={"failures": b.c.failures + 1, "error": ins.excluded.error},
    ).returning(b.c.failures)


def _give_up() -> Any:
    s = sql.table("segments")
    return (
        update(s)
        .where(
            s.c.workspace_id == sql.param("ws"),
            s.c.id == sql.param("id", UUID(as_uuid=True)),
            s.c.status == "building",
        )
        .values(status="failed")
    )


_BUILD_STATE, _BUILD_AT, _BUILD_DONE = sql.Query(_build_state), sql.Query(_build_at), sql.Query(_build_done)
_FAILED, _GIVE_UP = sql.Query(_failed), sql.Query(_give_up)


def _mentions(node: Any, prefix: str) -> bool:
    """Whether a filter names a field through the relation ``prefix`` (``company.``)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("field"), str) and item["field"].startswith(prefix):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def has_relative_time(node: Any) -> bool:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif relative_time.is_relative(item):
            return True
    return False


async def evaluate_segment(
    conn: asyncpg.Connection,
    segment: dict[str, Any],
    ids: Sequence[uuid.UUID] | None,
    erased: Iterable[uuid.UUID] = (),
    *,
    locked: bool = False,
    known: dict[str, Any] | None = None,
    causes: dict[uuid.UUID, str] | None = None,
    span: tuple[uuid.UUID, uuid.UUID] | None = None,
) -> tuple[int, int]:
    """Bring a dynamic segment's members in line with its filter, among ``ids`` (None: all objects), in
    the caller's transaction (``locked``: the caller holds the segment's lock already; ``known``: custom
    field definitions already read, see ``compile_filter``; ``causes``: see ``repository.change``).
    ``span``: only the object ids in (lo, hi], a build's chunk. Returns (entered, left)."""
    ws = segment["workspace_id"]
    if not locked:
        await repo.lock_segment(conn, ws, segment["id"])
    params = Params(ws=ws)
    try:
        condition = await compile_filter(conn, ws, segment["object_type"], segment["filter"], params, known)
    except Exception:  # a filter a later definition change made invalid: nothing matches it
        log.warning("segment %s: its filter no longer compiles; left as it is", segment["id"])
        return 0, 0
    rows = await repo.evaluate(conn, segment["object_type"], condition, params, segment["id"], ids, span)
    gone = set(erased)
    added: dict[uuid.UUID, str] = {}
    removed: dict[uuid.UUID, str] = {}
    for r in rows:
        oid = r["id"]
        if r["add"]:
            added[oid] = "matched"
        else:
            removed[oid] = _exit_reason(oid, gone, r["merged"], r["archived"])
    if not added and not removed:
        return 0, 0
    done_add, done_remove = await repo.change(
        conn, SystemContext(ws, "system:segments"), segment, added, removed, causes
    )
    return len(done_add), len(done_remove)


def _causes(events: Sequence[Any]) -> dict[uuid.UUID, str]:
    """The automation runs whose change is the last the step saw of an object, by object: its entries and
    exits carry the run's ``request_id``, so the automations they trigger are one deeper."""
    last = {e["object_id"]: e["request_id"] for e in events}
    return {oid: rid for oid, rid in last.items() if depth_of(rid) > 0}


async def _touched(
    conn: asyncpg.Connection, ws: uuid.UUID, events: Sequence[Any], segments: Sequence[dict[str, Any]]
) -> tuple[dict[str, set[uuid.UUID]], set[uuid.UUID]]:
    """The ids each object type's segments must look at again, and the contacts erased."""
    touched: dict[str, set[uuid.UUID]] = {"contact": set(), "company": set(), "deal": set()}
    erased: set[uuid.UUID] = set()
    for e in events:
        kind = e["object_type"]
        if kind not in touched:
            continue
        touched[kind].add(e["object_id"])
        if e["type"] == "contact.erased":
            erased.add(e["object_id"])
        if e["merged"]:
            touched[kind].update(uuid.UUID(i) for i in e["merged"])
    # through relations: the contacts and deals of a touched company, the deals of a touched contact
    for target, hops in (
        ("contact", (("company.", "company", "contacts", "company_id"),)),
        (
            "deal",
            (("company.", "company", "deals", "company_id"), ("contact.", "contact", "deals", "contact_id")),
        ),
    ):
        for prefix, source, table, fk in hops:
            if not touched[source]:
                continue
            if any(s["object_type"] == target and _mentions(s["filter"], prefix) for s in segments):
                rows = await _related(table, fk).fetch(conn, ws=ws, ids=list(touched[source]))
                touched[target].update(r["id"] for r in rows)
    return touched, erased


async def _static_exits(
    conn: asyncpg.Connection,
    ws: uuid.UUID,
    touched: dict[str, set[uuid.UUID]],
    erased: set[uuid.UUID],
    static_types: set[str],
) -> None:
    """Static segments lose members archived, merged or erased (their members are the clients' otherwise);
    ``static_types``: the object types the workspace has live static segments of."""
    for object_type, ids in touched.items():
        if not ids or object_type not in static_types:
            continue
        rows = await _static_exit_rows(repo.TABLE_OF[object_type]).fetch(
            conn, ws=ws, object_type=object_type, ids=list(ids)
        )
        by_segment: dict[uuid.UUID, dict[uuid.UUID, str]] = {}
        for r in rows:
            reason = "erased" if r["object_id"] in erased else "merged" if r["merged"] else "archived"
            by_segment.setdefault(r["segment_id"], {})[r["object_id"]] = reason
        for sid, leaving in by_segment.items():
            segment = dict(await _SEGMENT.fetchrow(conn, ws=ws, id=sid))
            await repo.lock_segment(conn, ws, sid)
            await repo.change(conn, SystemContext(ws, "system:segments"), segment, {}, leaving)


@sql.shape
def _static_exit_rows(table: str) -> Select[Any]:
    """(segment, object, merged) for members of live static segments among ``ids`` whose object is
    archived."""
    s, m, t = sql.table("segments"), sql.table("segment_members"), sql.table(table)
    ws = sql.param("ws")
    merged = t.c.merged_into.is_not(None) if "merged_into" in t.c else sql.const(False)
    return (
        select(m.c.segment_id, m.c.object_id, merged.label("merged"))
        .join(s, and_(s.c.workspace_id == m.c.workspace_id, s.c.id == m.c.segment_id))
        .join(t, and_(t.c.workspace_id == m.c.workspace_id, t.c.id == m.c.object_id))
        .where(
            m.c.workspace_id == ws,
            m.c.object_id == any_(sql.param("ids", _IDS)),
            s.c.kind == "static",
            s.c.archived_at.is_(None),
            s.c.object_type == sql.param("object_type", Text),
            t.c.archived_at.is_not(None),
        )
    )


@dataclass(frozen=True, slots=True)
class _Compiled:
    """The dynamic segments of one object type of a workspace, compiled for ``repository.evaluate_many``:
    their conditions (one ``params`` for all) and ids, in the same order."""

    fingerprint: Hashable
    params: Params
    conditions: list[Expr]
    sids: list[uuid.UUID]


_COMPILED: dict[tuple[uuid.UUID, str], _Compiled] = {}
_COMPILED_MAX = 1024
"""(workspace, object type) entries kept; past it the cache starts afresh."""


async def _compiled(
    conn: asyncpg.Connection, ws: uuid.UUID, object_type: str, segments: Sequence[dict[str, Any]]
) -> _Compiled:
    """``segments`` (dynamic, of ``object_type``, in id order) compiled, or as a previous step compiled
    them: compiling 200 filters cost more of a step's Python time than all its statements together, and
    the result depends only on the filters and, when one names a custom field, on the type's custom field
    definitions (read each step then, as compiling would). A filter that no longer compiles (a definition
    changed since) is left out: nothing matches it, and its members stay as they are."""
    filters = tuple((sg["id"], jsonutil.dumps(sg["filter"])) for sg in segments)
    known: dict[str, Any] = {}
    definitions: Hashable = None
    if any(_mentions(sg["filter"], "custom_fields.") for sg in segments):
        spec = REGISTRY[repo.TABLE_OF[object_type]]
        known[object_type] = await custom_fields.definitions(conn, ws, spec.object)
        definitions = jsonutil.dumps(known[object_type])
    fingerprint = (filters, definitions)
    cached = _COMPILED.get((ws, object_type))
    if cached is not None and cached.fingerprint == fingerprint:
        return cached
    params = Params(ws=ws)
    conditions, sids = [], []
    for segment in segments:
        try:
            condition = await compile_filter(conn, ws, object_type, segment["filter"], params, known)
        except Exception:  # a filter a later definition change made invalid: nothing matches it
            log.warning("segment %s: its filter no longer compiles; left as it is", segment["id"])
            continue
        conditions.append(condition)
        sids.append(segment["id"])
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.clear()
    made = _COMPILED[ws, object_type] = _Compiled(fingerprint, params, conditions, sids)
    return made


async def _follow_segments(
    conn: asyncpg.Connection,
    ws: uuid.UUID,
    due: Sequence[dict[str, Any]],
    touched: dict[str, set[uuid.UUID]],
    erased: set[uuid.UUID],
    causes: dict[uuid.UUID, str],
) -> None:
    """Evaluate the step's touched ids against every due segment of their type in one statement per
    object type (``repository.evaluation_many``), and write every segment's entries and exits in one
    ``repository.change_many``: the step's cost follows its object types, not its segments."""
    by_id = {s["id"]: s for s in due}
    added: dict[repo.Pair, str] = {}
    removed: dict[repo.Pair, str] = {}
    for object_type, ids in touched.items():
        if not ids:
            continue
        compiled = await _compiled(conn, ws, object_type, [s for s in due if s["object_type"] == object_type])
        if not compiled.conditions:
            continue
        params, conditions, sids = compiled.params, compiled.conditions, compiled.sids
        for r in await repo.evaluate_many(conn, object_type, conditions, params, sids, sorted(ids)):
            pair, oid = (r["segment_id"], r["object_id"]), r["object_id"]
            if r["add"]:
                added[pair] = "matched"
            else:
                removed[pair] = _exit_reason(oid, erased, r["merged"], r["archived"])
    if added or removed:
        actor = SystemContext(ws, "system:segments")
        await repo.change_many(conn, actor, by_id, added, removed, causes)


def _exit_reason(oid: uuid.UUID, erased: set[uuid.UUID], merged: bool, archived: bool) -> str:
    if oid in erased:
        return "erased"
    if merged:
        return "merged"
    return "archived" if archived else "unmatched"


async def follow_workspace(pool: Any, ws: uuid.UUID, bound: int) -> int:
    """One step of a workspace's events; the number read (0: nothing new, or another worker has it)."""
    async with pool.acquire() as conn, conn.transaction():
        after = await _CLAIM.fetchval(conn, ws=ws)
        if after is None:  # no cursor yet (made here, once), or another worker holds it
            await _START.execute(conn, ws=ws)
            after = await _CLAIM.fetchval(conn, ws=ws)
        if after is None or after >= bound:
            return 0
        events = await _EVENTS.fetch(conn, ws=ws, after=after, bound=bound)
        if not events:
            await _ADVANCE.execute(conn, ws=ws, sequence=bound)
            return 0
        live = [dict(r) for r in await _LIVE.fetch(conn, ws=ws)]
        segments = [s for s in live if s["kind"] == "dynamic"]
        static_types = {s["object_type"] for s in live if s["kind"] == "static"}
        touched, erased = await _touched(conn, ws, events, segments)
        due = [s for s in segments if touched[s["object_type"]]]
        # the step's segments locked in one statement, their filters compiled as the last step left them:
        # the step costs a handful of statements (one evaluation per object type) plus the writes of what
        # changed
        await repo.lock_segment(conn, ws, *(s["id"] for s in due))
        await repo.step_settings(conn)
        await _follow_segments(conn, ws, due, touched, erased, _causes(events))
        await _static_exits(conn, ws, touched, erased, static_types)
        last = events[-1]["sequence"] if len(events) == BATCH else bound
        await _ADVANCE.execute(conn, ws=ws, sequence=last)
        return len(events)


async def follow_once(pool: Any) -> int:
    """One step of every workspace with segments; the events read."""
    bound = await horizon.bound(pool)  # first, in a statement of its own (see horizon.py)
    read = 0
    for row in await _WORKSPACES.fetch(pool):
        read += await follow_workspace(pool, row["workspace_id"], bound)
    return read


async def _record_failure(pool: Any, ws: uuid.UUID, sid: uuid.UUID, error: str, attempts: int) -> None:
    """Count a failed chunk; after ``attempts`` failures in a row the segment turns ``failed``, so a build
    that cannot succeed stops being retried (an edit of the filter starts it over)."""
    async with pool.acquire() as conn, conn.transaction():
        failures = await _FAILED.fetchval(conn, ws=ws, id=sid, error=error[:500])
        if failures is not None and failures >= attempts:
            await _GIVE_UP.execute(conn, ws=ws, id=sid)
            log.error("segment %s: build failed %d times, marked failed: %s", sid, failures, error)


async def build_chunk(pool: Any, ws: uuid.UUID, sid: uuid.UUID, chunk: int) -> bool:
    """One chunk of a segment's build, in one transaction holding the segment's lock: the next ``chunk``
    object ids after the build's position are evaluated (their members, history and events written
    set-based) and the position advances with them; the last chunk marks the segment ready. Objects behind
    the position that change meanwhile are the follow step's (it evaluates building segments too), so the
    membership is exact when the walk ends. Whether a chunk was done."""
    async with pool.acquire() as conn, conn.transaction():
        await repo.lock_segment(conn, ws, sid)
        found = await _SEGMENT.fetchrow(conn, ws=ws, id=sid)
        if found is None or found["status"] != "building" or found["archived_at"] is not None:
            return False
        segment = dict(found)
        state = await _BUILD_STATE.fetchrow(conn, ws=ws, id=sid)
        # a build of an older version (the filter was edited, or the segment archived and restored since)
        # starts over from the first id
        after = state["after"] if state is not None and state["version"] == segment["version"] else None
        lo = after or _NIL
        table = repo.TABLE_OF[segment["object_type"]]
        ids = [r["id"] for r in await _chunk_ids(table).fetch(conn, ws=ws, after=lo, limit=chunk)]
        last = len(ids) < chunk
        hi = _MAX if last else ids[-1]
        await evaluate_segment(conn, segment, None, locked=True, span=(lo, hi))
        if last:
            await _READY.fetchval(conn, ws=ws, id=sid, version=segment["version"])
            await _BUILD_DONE.execute(conn, ws=ws, id=sid)
        else:
            await _BUILD_AT.execute(conn, ws=ws, id=sid, version=segment["version"], after=hi)
        return True


async def build_once(pool: Any, chunk: int = BUILD_CHUNK, attempts: int = BUILD_ATTEMPTS) -> int:
    """One chunk of each segment waiting to be built; the chunks done (0: nothing to build)."""
    done = 0
    for row in await _BUILDING.fetch(pool):
        ws, sid = row["workspace_id"], row["id"]
        try:
            done += await build_chunk(pool, ws, sid, chunk)
        except Exception as exc:  # a statement timeout, a bug: counted, so it is not retried forever
            log.warning("segment %s: build chunk failed: %s", sid, exc)
            await _record_failure(pool, ws, sid, f"{type(exc).__name__}: {exc}", attempts)
    return done


async def relative_once(pool: Any) -> int:
    """Evaluate whole every live dynamic segment whose filter holds a relative time."""
    done = 0
    for row in await _RELATIVE.fetch(pool):
        if not has_relative_time(row["filter"]):
            continue
        async with pool.acquire() as conn, conn.transaction():
            found = await _SEGMENT.fetchrow(conn, ws=row["workspace_id"], id=row["id"])
            if found is None or found["archived_at"] is not None:
                continue
            await evaluate_segment(conn, dict(found), None)
            done += 1
    return done


BUSY_READ = 100
"""Events a step reads for the next to wait the whole ``segment_busy_seconds``."""


def _next_step(read: int, every: float, busy: float) -> float:
    """Seconds from a caught-up step's start to the next one's, after it read ``read`` events: half a poll
    for a trickle, growing with the events read to ``busy``. At W writes a second a step reads about W
    times this interval, so the interval settles at ``every / 2 / (1 - W * busy / BUSY_READ)``: 0.1 s at
    10 writes/s, 0.2 s at 100, the whole 0.5 s from 160 (with the defaults)."""
    return min(busy, every / 2 + read * busy / BUSY_READ)


async def run_forever(pool: Any, settings: Settings, stop: asyncio.Event) -> None:
    """Until ``stop``: follow, build and (on its schedule) the relative pass, again at once while behind.

    A follow step that caught up (its batch not full) while writes keep coming is followed by the next
    no sooner than half a poll after it began, plus ``segment_busy_seconds`` per ``BUSY_READ`` events it
    read, up to ``segment_busy_seconds`` in all (``_next_step``): a step's cost is mostly per step (a dozen
    statements, the evaluation's plan), so under a stream of writes that keeps the machine busy fewer,
    larger steps cost less per write, for at most that much more latency, while a trickle of writes is
    still followed every half a poll. Idle, the next write is seen within a poll."""
    every = settings.segment_poll_seconds
    busy = max(settings.segment_busy_seconds, every / 2)
    if every <= 0:
        return
    next_relative = 0.0
    while not stop.is_set():
        began = time.monotonic()
        built = read = 0
        try:
            chunk, attempts = settings.segment_build_chunk, settings.segment_build_attempts
            built = await build_once(pool, chunk, attempts)
            read = await follow_once(pool)
            if time.monotonic() >= next_relative:
                next_relative = time.monotonic() + settings.segment_relative_seconds
                await relative_once(pool)
        except db.ERRORS as exc:
            log.warning("segment job failed, retrying: %s", exc)
        except Exception:
            # a bug must not stop the loop for every workspace; the cursor did not move, so it is retried
            log.exception("segment job failed")
        if built or read >= BATCH:
            continue
        pause = every if not read else began + _next_step(read, every, busy) - time.monotonic()
        if pause > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
