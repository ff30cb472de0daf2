"""SQL the deal rules need beyond the shared resource repository: stage lookups and the stage history."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from ..resources.spec import ResourceSpec

# The stages a batch of deals may land on, in one query: every stage of the named pipelines (for "first open
# stage"), the named stages (to find their pipeline), and the default pipeline's stages when one is needed.
_STAGES_SQL = """
SELECT s.id, s.pipeline_id, s.kind, s.position, p.is_default, p.archived_at
FROM pipeline_stages AS s
JOIN pipelines AS p ON p.workspace_id = s.workspace_id AND p.id = s.pipeline_id
WHERE s.workspace_id = $1
  AND (s.pipeline_id = ANY($2::uuid[]) OR s.id = ANY($3::uuid[]) OR ($4 AND p.is_default))
ORDER BY s.pipeline_id, s.position
"""


async def stages_for(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    pipeline_ids: Sequence[uuid.UUID],
    stage_ids: Sequence[uuid.UUID],
    with_default: bool,
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        _STAGES_SQL, workspace_id, list(pipeline_ids), list(stage_ids), with_default
    )
    return rows


async def in_stage(
    conn: asyncpg.Connection, spec: ResourceSpec, workspace_id: uuid.UUID, stage_id: uuid.UUID
) -> list[dict[str, Any]]:
    """Every deal in a stage, archived ones too, locked until the transaction ends."""
    sql = (
        f"SELECT {', '.join(spec.columns)} FROM {spec.table} "
        "WHERE workspace_id = $1 AND stage_id = $2 ORDER BY id FOR UPDATE"
    )
    return [dict(r) for r in await conn.fetch(sql, workspace_id, stage_id)]


async def count_in_stage(conn: asyncpg.Connection, workspace_id: uuid.UUID, stage_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM deals WHERE workspace_id = $1 AND stage_id = $2", workspace_id, stage_id
    )
    return count


# Each entry's left_at is the next entry's changed_at; computed over the one deal's history (short), then
# paged by (changed_at, id).
_HISTORY_SQL = """
SELECT * FROM (
    SELECT id, deal_id, pipeline_id, from_stage_id, to_stage_id, changed_at, actor,
           lead(changed_at) OVER (ORDER BY changed_at, id) AS left_at
    FROM deal_stage_changes WHERE workspace_id = $1 AND deal_id = $2
) AS h
WHERE ($3::timestamptz IS NULL OR (changed_at, id) > ($3, $4::uuid))
ORDER BY changed_at, id
LIMIT $5
"""


async def stage_history(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: uuid.UUID,
    deal_id: uuid.UUID,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        _HISTORY_SQL,
        workspace_id,
        deal_id,
        after[0] if after else None,
        after[1] if after else None,
        limit + 1,
    )
    return [dict(r) for r in rows]
