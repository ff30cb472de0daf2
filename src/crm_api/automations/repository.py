"""The automations' SQL beyond the shared resource statements: the workers' claim of a workspace whose log
moved past its cursor, the enabled automations, a trigger filter on a batch of objects, run rows (and the
``automation.run_failed`` event with its deliveries, in one statement), the runs page."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, DateTime, Select, Uuid, any_, column, func, select, true, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert

from .. import sql
from ..events.store import events_cte, fanout, recordset
from ..resources.exprs import Params
from ..resources.filters import Compiler
from ..resources.spec import ResourceSpec

RUN_COLUMNS = (
    "id",
    "automation_id",
    "event_id",
    "event_type",
    "object_type",
    "object_id",
    "depth",
    "status",
    "actions",
    "error",
    "created_at",
)


def _claim() -> Select[Any]:
    # across workspaces, like the dispatcher's claim: a workspace with events past its cursor, and no other
    # worker on it (the row stays locked until the batch commits)
    c, e = sql.table("automation_cursors"), sql.table("events")
    behind = select(e.c.sequence).where(e.c.workspace_id == c.c.workspace_id, e.c.sequence > c.c.sequence)
    return (
        select(c.c.workspace_id, c.c.sequence)
        .where(behind.exists())
        .limit(1)
        .with_for_update(skip_locked=True)
    )


CLAIM = sql.Query(_claim)


def _move() -> Any:
    c = sql.table("automation_cursors")
    return (
        update(c)
        .where(c.c.workspace_id == sql.param("ws"))
        .values(sequence=sql.param("sequence", BigInteger))
    )


MOVE = sql.Query(_move)


def _enabled() -> Select[Any]:
    a = sql.table("automations")
    return select(a.c.id, a.c.trigger, a.c.actions, a.c.created_at).where(
        a.c.workspace_id == sql.param("ws"), a.c.enabled.is_(True), a.c.archived_at.is_(None)
    )


ENABLED = sql.Query(_enabled)
_FILTERS = sql.Shapes(256)


async def matching(
    conn: asyncpg.Connection, spec: ResourceSpec, ws: uuid.UUID, filter: Any, ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``ids`` match the trigger's filter now: one statement for a batch's objects."""
    params = Params(ws=ws)
    condition = Compiler(spec, params).compile(filter, "/trigger/filter")
    wanted = params.add(list(ids), "uuid[]")

    def build() -> Select[Any]:
        t = sql.table(spec.table)
        return select(t.c.id).where(
            t.c.workspace_id == sql.param("ws"), t.c.id == any_(wanted.build()), condition.build()
        )

    statement = _FILTERS.get((spec.table, condition.key, wanted.key), build)
    return {r["id"] for r in await statement.fetch(conn, **params.values)}


def _insert_run() -> Any:
    r = sql.table("automation_runs")
    values = {name: sql.param(name, r.c[name].type) for name in ("workspace_id", *RUN_COLUMNS)}
    return insert(r).values(values)


INSERT_RUN = sql.Query(_insert_run)


def _insert_runs() -> Any:
    # a batch's run rows from one JSON array
    r = sql.table("automation_runs")
    rows = recordset("runs", "automation_runs", "runs")
    return insert(r).from_select([c.name for c in r.columns], select(*(rows.c[c.name] for c in r.columns)))


INSERT_RUNS = sql.Query(_insert_runs)


@sql.shape
def locked(spec: ResourceSpec) -> Select[Any]:
    """A batch's records, locked in id order (two workers' batches on shared records queue, not deadlock)."""
    t = sql.table(spec.table)
    return (
        select(*sql.columns(spec.columns, t))
        .where(t.c.workspace_id == sql.param("ws"), t.c.id == any_(sql.param("ids", ARRAY(UUID))))
        .order_by(t.c.id)
        .with_for_update()
    )


def _run_automations() -> Select[Any]:
    r = sql.table("automation_runs")
    return select(r.c.id, r.c.automation_id).where(
        r.c.workspace_id == sql.param("ws"), r.c.id == any_(sql.param("ids", ARRAY(UUID(as_uuid=True))))
    )


RUN_AUTOMATIONS = sql.Query(_run_automations)


def _run_failed() -> Select[Any]:
    # the failed run and its event (and the event's deliveries) together
    r = sql.table("automation_runs")
    values = {name: sql.param(name, r.c[name].type) for name in ("workspace_id", *RUN_COLUMNS)}
    run = insert(r).values(values).returning(r.c.id).cte("run")
    ev = events_cte("events", lambda _: true())
    return select(func.count()).select_from(run).add_cte(ev, fanout(ev).cte("fanout"))


RUN_FAILED = sql.Query(_run_failed)


def _runs_page() -> Select[Any]:
    r = sql.table("automation_runs")
    return (
        select(*sql.columns(RUN_COLUMNS, r))
        .where(
            r.c.workspace_id == sql.param("ws"),
            r.c.automation_id == sql.param("automation", UUID(as_uuid=True)),
            tuple_(r.c.created_at, r.c.id)
            < tuple_(sql.param("before_at", DateTime(timezone=True)), sql.param("before", Uuid)),
        )
        .order_by(r.c.created_at.desc(), r.c.id.desc())
        .limit(sql.param("limit", BigInteger))
    )


RUNS_PAGE = sql.Query(_runs_page)


def _take_turn() -> Any:
    # the row's lock holds a concurrent run of the same action until this one's transaction ends
    t = sql.table("automation_turns")
    ws, aid = sql.param("ws"), sql.param("automation", UUID(as_uuid=True))
    action = sql.param("action", BigInteger)
    stmt = insert(t).values(workspace_id=ws, automation_id=aid, action=action, turns=1)
    return stmt.on_conflict_do_update(
        index_elements=[t.c.workspace_id, t.c.automation_id, t.c.action], set_={"turns": t.c.turns + 1}
    ).returning(t.c.turns - 1)


def _peek_turn() -> Select[Any]:
    t = sql.table("automation_turns")
    return select(t.c.turns).where(
        t.c.workspace_id == sql.param("ws"),
        t.c.automation_id == sql.param("automation", UUID(as_uuid=True)),
        t.c.action == sql.param("action", BigInteger),
    )


_TAKE_TURN = sql.Query(_take_turn)
_PEEK_TURN = sql.Query(_peek_turn)


async def turn(
    conn: asyncpg.Connection, ws: uuid.UUID, automation: uuid.UUID, action: int, take: bool
) -> int:
    """The round robin's count for an action so far; ``take`` moves it on (a run), else it is only read (a
    test)."""
    if take:
        value: int = await _TAKE_TURN.fetchval(conn, ws=ws, automation=automation, action=action)
        return value
    return int(await _PEEK_TURN.fetchval(conn, ws=ws, automation=automation, action=action) or 0)


def _open(spec: ResourceSpec, t: Any) -> list[Any]:
    """What counts as a member's open work of the object's type, for ``least_open``."""
    if spec.object == "deal":
        return [t.c.status == sql.const("open")]
    if spec.object == "ticket":
        return [t.c.status.not_in([sql.const("solved"), sql.const("closed")])]
    if spec.object == "activity":
        return [t.c.completed_at.is_(None)]
    return []


@sql.shape
def _open_counts(spec: ResourceSpec) -> Select[Any]:
    # one count per member over the (workspace_id, owner, created_at, id) index
    t = sql.table(spec.table)
    ids = func.unnest(sql.param("ids", ARRAY(UUID(as_uuid=True))))
    member = ids.table_valued(column("id", UUID(as_uuid=True))).render_derived(name="m")
    count = (
        select(func.count())
        .where(
            t.c.workspace_id == sql.param("ws"),
            t.c[spec.member_columns[0]] == member.c.id,
            t.c.archived_at.is_(None),
            *_open(spec, t),
        )
        .scalar_subquery()
    )
    return select(member.c.id, count.label("open"))


async def open_counts(
    conn: asyncpg.Connection, spec: ResourceSpec, ws: uuid.UUID, members: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """How many open records of the spec's type each member owns."""
    rows = await _open_counts(spec).fetch(conn, ws=ws, ids=list(members))
    return {r["id"]: r["open"] for r in rows}


def _due_schedule() -> Select[Any]:
    # across workspaces, like the cursor's claim: an enabled schedule automation whose check is due, locked
    # for this worker until its check commits
    a, s = sql.table("automations"), sql.table("automation_schedules")
    later = select(s.c.automation_id).where(
        s.c.workspace_id == a.c.workspace_id,
        s.c.automation_id == a.c.id,
        s.c.next_at > sql.param("now", DateTime(timezone=True)),
    )
    return (
        select(a.c.workspace_id, a.c.id, a.c.trigger, a.c.actions, a.c.created_at)
        .where(
            a.c.enabled.is_(True),
            a.c.archived_at.is_(None),
            a.c.trigger["type"].astext == sql.const("schedule"),
            ~later.exists(),
        )
        .limit(1)
        .with_for_update(of=a, skip_locked=True)
    )


DUE_SCHEDULE = sql.Query(_due_schedule)


def _next_check() -> Any:
    s = sql.table("automation_schedules")
    stmt = insert(s).values(
        workspace_id=sql.param("ws"),
        automation_id=sql.param("automation", UUID(as_uuid=True)),
        next_at=sql.param("next_at", DateTime(timezone=True)),
    )
    return stmt.on_conflict_do_update(
        index_elements=[s.c.workspace_id, s.c.automation_id], set_={"next_at": stmt.excluded.next_at}
    )


NEXT_CHECK = sql.Query(_next_check)
_SCHEDULED = sql.Shapes(256)
SCHEDULE_BATCH = 500


async def stale(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ws: uuid.UUID,
    automation: uuid.UUID,
    trigger: dict[str, Any],
    before: Any,
) -> list[Any]:
    """Live records matching a schedule trigger, not updated since ``before`` and not run for since their
    last update (once per record per match): the oldest first."""
    params = Params(ws=ws, automation=automation)
    where = []
    if trigger.get("filter") is not None:
        where.append(Compiler(spec, params).compile(trigger["filter"], "/trigger/filter"))
    cutoff = params.add(before, "timestamptz")
    limit = params.add(SCHEDULE_BATCH, "bigint")

    def build() -> Select[Any]:
        t, r = sql.table(spec.table), sql.table("automation_runs")
        done = select(r.c.id).where(
            r.c.workspace_id == t.c.workspace_id,
            r.c.automation_id == sql.param("automation", UUID(as_uuid=True)),
            r.c.object_id == t.c.id,
            r.c.created_at >= t.c.updated_at,
        )
        return (
            select(t.c.id, t.c.version)
            .where(
                t.c.workspace_id == sql.param("ws"),
                t.c.archived_at.is_(None),
                t.c.updated_at <= cutoff.build(),
                *(w.build() for w in where),
                ~done.exists(),
            )
            .order_by(t.c.updated_at, t.c.id)
            .limit(limit.build())
        )

    key = ("stale", spec.table, tuple(w.key for w in where), cutoff.key, limit.key)
    return await _SCHEDULED.get(key, build).fetch(conn, **params.values)
