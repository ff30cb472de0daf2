"""SQL the deal rules need beyond the shared resource repository: stage lookups and the stage history."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import Boolean, DateTime, Select, and_, any_, func, or_, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from .. import sql
from ..resources.spec import ResourceSpec


def _stages() -> Select[Any]:
    """The stages a batch of deals may land on, in one query: every stage of the named pipelines (for "first
    open stage"), the named stages (to find their pipeline), and the default pipeline's stages when one is
    needed."""
    s = sql.table("pipeline_stages").alias("s")
    p = sql.table("pipelines").alias("p")
    return (
        select(s.c.id, s.c.pipeline_id, s.c.kind, s.c.position, p.c.is_default, p.c.archived_at)
        .select_from(s.join(p, and_(p.c.workspace_id == s.c.workspace_id, p.c.id == s.c.pipeline_id)))
        .where(
            s.c.workspace_id == sql.param("ws"),
            or_(
                s.c.pipeline_id == any_(sql.param("pipeline_ids", ARRAY(UUID))),
                s.c.id == any_(sql.param("stage_ids", ARRAY(UUID))),
                and_(sql.param("with_default", Boolean), p.c.is_default),
            ),
        )
        .order_by(s.c.pipeline_id, s.c.position)
    )


_STAGES = sql.Query(_stages)


async def stages_for(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    pipeline_ids: Sequence[uuid.UUID],
    stage_ids: Sequence[uuid.UUID],
    with_default: bool,
) -> list[asyncpg.Record]:
    return await _STAGES.fetch(
        conn,
        ws=workspace_id,
        pipeline_ids=list(pipeline_ids),
        stage_ids=list(stage_ids),
        with_default=with_default,
    )


@sql.shape
def _in_stage(spec: ResourceSpec) -> Select[Any]:
    t = sql.table(spec.table)
    return (
        select(*sql.columns(spec.columns, t))
        .where(t.c.workspace_id == sql.param("ws"), t.c.stage_id == sql.param("stage_id"))
        .order_by(t.c.id)
        .with_for_update()
    )


async def in_stage(
    conn: asyncpg.Connection, spec: ResourceSpec, workspace_id: uuid.UUID, stage_id: uuid.UUID
) -> list[dict[str, Any]]:
    """Every deal in a stage, archived ones too, locked until the transaction ends."""
    return [dict(r) for r in await _in_stage(spec).fetch(conn, ws=workspace_id, stage_id=stage_id)]


def _count_in_stage() -> Select[Any]:
    d = sql.table("deals")
    return select(func.count()).where(
        d.c.workspace_id == sql.param("ws"), d.c.stage_id == sql.param("stage_id")
    )


_COUNT_IN_STAGE = sql.Query(_count_in_stage)


async def count_in_stage(conn: asyncpg.Connection, workspace_id: uuid.UUID, stage_id: uuid.UUID) -> int:
    count: int = await _COUNT_IN_STAGE.fetchval(conn, ws=workspace_id, stage_id=stage_id)
    return count


def _history() -> Select[Any]:
    """Each entry's left_at is the next entry's changed_at; computed over the one deal's history (short),
    then paged by (changed_at, id)."""
    c = sql.table("deal_stage_changes")
    h = (
        select(
            c.c.id,
            c.c.deal_id,
            c.c.pipeline_id,
            c.c.from_stage_id,
            c.c.to_stage_id,
            c.c.changed_at,
            c.c.actor,
            func.lead(c.c.changed_at).over(order_by=(c.c.changed_at, c.c.id)).label("left_at"),
        )
        .where(c.c.workspace_id == sql.param("ws"), c.c.deal_id == sql.param("deal_id"))
        .subquery("h")
    )
    after_at = sql.param("after_at", DateTime(timezone=True))
    return (
        select(h)
        .where(
            or_(
                after_at.is_(None),
                tuple_(h.c.changed_at, h.c.id) > tuple_(after_at, sql.param("after_id", UUID)),
            )
        )
        .order_by(h.c.changed_at, h.c.id)
        .limit(sql.param("limit"))
    )


_HISTORY = sql.Query(_history)


async def stage_history(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: uuid.UUID,
    deal_id: uuid.UUID,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await _HISTORY.fetch(
        conn,
        ws=workspace_id,
        deal_id=deal_id,
        after_at=after[0] if after else None,
        after_id=after[1] if after else None,
        limit=limit + 1,
    )
    return [dict(r) for r in rows]
