"""All SQL for pipelines and their stages. A pipeline travels as a dict with its stages as a list."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import (
    Boolean,
    ColumnElement,
    DateTime,
    Select,
    any_,
    column,
    delete,
    func,
    not_,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, aggregate_order_by, insert
from sqlalchemy.sql.selectable import NamedFromClause

from .. import jsonutil, sql
from ..errors import Conflict
from ..events.store import events_cte, fanout

_PIPELINE_FIELDS = ("id", "name", "is_default", "created_at", "updated_at", "version", "archived_at")
_STAGE_FIELDS = ("id", "name", "position", "probability", "kind")


def _pipelines() -> tuple[NamedFromClause, Select[Any]]:
    """The workspace's pipelines with their stages, in order, as a jsonb array."""
    p = sql.table("pipelines").alias("p")
    s = sql.table("pipeline_stages").alias("s")
    stage = func.jsonb_build_object(*(x for f in _STAGE_FIELDS for x in (sql.const(f), s.c[f])))
    stages = (
        select(func.jsonb_agg(aggregate_order_by(stage, s.c.position)))
        .where(s.c.workspace_id == p.c.workspace_id, s.c.pipeline_id == p.c.id)
        .scalar_subquery()
    )
    stmt = select(
        *sql.columns(_PIPELINE_FIELDS, p), func.coalesce(stages, sql.const("[]", JSONB)).label("stages")
    ).where(p.c.workspace_id == sql.param("ws"))
    return p, stmt


def _fetch() -> Select[Any]:
    p, stmt = _pipelines()
    return stmt.where(p.c.id == sql.param("id"))


def _fetch_many() -> Select[Any]:
    p, stmt = _pipelines()
    return stmt.where(p.c.id == any_(sql.param("ids", ARRAY(UUID))))


def _stages() -> Select[Any]:
    s = sql.table("pipeline_stages")
    return select(*sql.columns(_STAGE_FIELDS, s)).where(
        s.c.workspace_id == sql.param("ws"), s.c.id == any_(sql.param("ids", ARRAY(UUID)))
    )


@sql.shape
def _page(with_cursor: bool, count: int) -> Select[Any]:
    """``count`` pipelines by (created_at, id), the archived ones too when asked, after the cursor if any.
    ``count`` is written into the statement, as the page size always was."""
    p, stmt = _pipelines()
    stmt = stmt.where(or_(sql.param("include_archived", Boolean), p.c.archived_at.is_(None)))
    if with_cursor:
        after = tuple_(sql.param("after_at", DateTime(timezone=True)), sql.param("after_id", UUID))
        stmt = stmt.where(tuple_(p.c.created_at, p.c.id) > after)
    return stmt.order_by(p.c.created_at, p.c.id).limit(count)


# The lock is its own statement, before the read: a statement that waited for a lock still reads the
# stages as of its start, which would miss the edit it waited for. NO KEY UPDATE (``key_share``) queues
# pipeline writers but not deal writes, whose foreign-key checks take KEY SHARE on the pipeline row (a plain
# FOR UPDATE would deadlock a stage removal against a deal entering that stage).
def _lock(by_id: bool) -> Select[Any]:
    p = sql.table("pipelines")
    which: ColumnElement[bool] = p.c.id == sql.param("id") if by_id else p.c.is_default
    return select(p.c.id).where(p.c.workspace_id == sql.param("ws"), which).with_for_update(key_share=True)


def _write() -> Select[Any]:
    """One statement per pipeline write: the pipeline row (insert, or update checked against the version
    read under the row lock), its stages (removed ones deleted, the rest upserted), the event and its
    deliveries. Nothing but the row happens unless the row was written (``ok``)."""
    p, st = sql.table("pipelines"), sql.table("pipeline_stages")
    ws = sql.param("ws", p.c.workspace_id.type)
    pipeline_id = sql.param("id", p.c.id.type)
    is_insert = sql.param("insert", Boolean)
    at = sql.param("at", p.c.updated_at.type)
    version = sql.param("version", p.c.version.type)
    values = {
        "name": sql.param("name", p.c.name.type),
        "is_default": sql.param("is_default", p.c.is_default.type),
        "updated_at": at,
        "version": version,
        "archived_at": sql.param("archived_at", p.c.archived_at.type),
    }
    inserted = {"workspace_id": ws, "id": pipeline_id, "created_at": at, **values}
    ins = (
        insert(p)
        .from_select(list(inserted), select(*inserted.values()).where(is_insert))
        .returning(p.c.id)
        .cte("ins")
    )
    upd = (
        update(p)
        .values(values)
        .where(p.c.workspace_id == ws, p.c.id == pipeline_id, p.c.version == version - 1, not_(is_insert))
        .returning(p.c.id)
        .cte("upd")
    )
    ok = union_all(select(ins.c.id), select(upd.c.id)).cte("ok")
    written = select(sql.const(1)).select_from(ok).exists()
    removed = (
        delete(st)
        .where(
            st.c.workspace_id == ws,
            st.c.pipeline_id == pipeline_id,
            st.c.id == any_(sql.param("removed", ARRAY(UUID))),
            written,
        )
        .cte("del")
    )
    given = (
        func.jsonb_to_recordset(sql.param("stages", JSONB))
        .table_valued(*(column(f, st.c[f].type) for f in _STAGE_FIELDS))
        .render_derived(name="s", with_types=True)
    )
    kept = {"workspace_id": ws, "pipeline_id": pipeline_id, **{f: given.c[f] for f in _STAGE_FIELDS}}
    upsert = insert(st).from_select(list(kept), select(*kept.values()).where(written))
    changed = [f for f in _STAGE_FIELDS if f != "id"]
    stages = upsert.on_conflict_do_update(
        index_elements=[st.c.workspace_id, st.c.id],
        set_={f: upsert.excluded[f] for f in changed},
        where=tuple_(*(st.c[f] for f in changed)).is_distinct_from(
            tuple_(*(upsert.excluded[f] for f in changed))
        ),
    ).cte("st")
    ev = events_cte("events", lambda e: written)
    return select(func.count()).select_from(ok).add_cte(removed, stages, ev, fanout(ev).cte("fanout"))


_FETCH = sql.Query(_fetch)
_FETCH_MANY = sql.Query(_fetch_many)
_STAGES = sql.Query(_stages)
_LOCK_BY_ID = sql.Query(lambda: _lock(by_id=True))
_LOCK_DEFAULT = sql.Query(lambda: _lock(by_id=False))
_WRITE = sql.Query(_write)


def _row(record: asyncpg.Record) -> dict[str, Any]:
    row = dict(record)
    row["stages"] = [
        {**s, "id": uuid.UUID(s["id"]), "probability": float(s["probability"])} for s in row["stages"]
    ]
    return row


async def fetch(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: uuid.UUID,
    pipeline_id: uuid.UUID,
    lock: bool = False,
) -> dict[str, Any] | None:
    if lock and await _LOCK_BY_ID.fetchval(conn, ws=workspace_id, id=pipeline_id) is None:
        return None
    record = await _FETCH.fetchrow(conn, ws=workspace_id, id=pipeline_id)
    return _row(record) if record is not None else None


async def fetch_many(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> list[dict[str, Any]]:
    """The pipelines with these ids (with their stages), in one statement."""
    return [_row(r) for r in await _FETCH_MANY.fetch(conn, ws=workspace_id, ids=list(ids))]


async def fetch_stages(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> list[dict[str, Any]]:
    """The stages with these ids, whatever their pipeline."""
    rows = await _STAGES.fetch(conn, ws=workspace_id, ids=list(ids))
    return [dict(r, probability=float(r["probability"])) for r in rows]


async def fetch_default(conn: asyncpg.Connection, workspace_id: uuid.UUID) -> dict[str, Any] | None:
    """The default pipeline, locked."""
    pipeline_id = await _LOCK_DEFAULT.fetchval(conn, ws=workspace_id)
    return await fetch(conn, workspace_id, pipeline_id) if pipeline_id is not None else None


async def list_page(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: uuid.UUID,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
    include_archived: bool,
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"ws": workspace_id, "include_archived": include_archived}
    if after is not None:
        params["after_at"], params["after_id"] = after
    rows = await _page(after is not None, int(limit) + 1).fetch(conn, **params)
    return [_row(r) for r in rows]


async def write(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    row: dict[str, Any],
    *,
    insert: bool,
    removed_stage_ids: Sequence[uuid.UUID],
    events: Sequence[dict[str, Any]],
) -> bool:
    """Insert or update the pipeline with its stages and events; False if the version moved."""
    try:
        written: int = await _WRITE.fetchval(
            conn,
            ws=workspace_id,
            id=row["id"],
            name=row["name"],
            is_default=row["is_default"],
            at=row["updated_at"] if not insert else row["created_at"],
            version=row["version"],
            archived_at=row["archived_at"],
            insert=insert,
            removed=list(removed_stage_ids),
            stages=jsonutil.dumps_str(row["stages"]),
            events=jsonutil.dumps_str(events),
        )
    except asyncpg.ForeignKeyViolationError:
        # a deal entered the stage between our check and the delete or the change of kind
        raise Conflict(
            "A deal entered the stage meanwhile; retry (with move_to_stage_id to remove it)"
        ) from None
    except asyncpg.UniqueViolationError:
        raise Conflict("Another pipeline became the default at the same time; retry") from None
    return written == 1
