"""All SQL for pipelines and their stages. A pipeline travels as a dict with its stages as a list."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from .. import jsonutil
from ..errors import Conflict
from ..events.store import FANOUT_SQL, insert_events

_SELECT = """
SELECT p.id, p.name, p.is_default, p.created_at, p.updated_at, p.version, p.archived_at,
    coalesce((SELECT jsonb_agg(jsonb_build_object('id', s.id, 'name', s.name, 'position', s.position,
                                                  'probability', s.probability, 'kind', s.kind)
                               ORDER BY s.position)
              FROM pipeline_stages AS s WHERE s.workspace_id = p.workspace_id AND s.pipeline_id = p.id),
             '[]') AS stages
FROM pipelines AS p
"""

# One statement per pipeline write: the pipeline row (insert, or update checked against the version read
# under the row lock), its stages (removed ones deleted, the rest upserted), the event and its deliveries.
_WRITE_SQL = f"""
WITH ins AS (
    INSERT INTO pipelines (workspace_id, id, name, is_default, created_at, updated_at, version, archived_at)
    SELECT $1, $2, $3, $4, $5, $5, $6, $7 WHERE $8
    RETURNING id
), upd AS (
    UPDATE pipelines SET name = $3, is_default = $4, updated_at = $5, version = $6, archived_at = $7
    WHERE workspace_id = $1 AND id = $2 AND version = $6 - 1 AND NOT $8
    RETURNING id
), ok AS (
    SELECT id FROM ins UNION ALL SELECT id FROM upd
), del AS (
    DELETE FROM pipeline_stages
    WHERE workspace_id = $1 AND pipeline_id = $2 AND id = ANY($9::uuid[]) AND EXISTS (SELECT 1 FROM ok)
), st AS (
    INSERT INTO pipeline_stages (workspace_id, id, pipeline_id, name, position, probability, kind)
    SELECT $1, s.id, $2, s.name, s.position, s.probability, s.kind
    FROM jsonb_to_recordset($10::jsonb) AS s(id uuid, name text, position int, probability numeric, kind text)
    WHERE EXISTS (SELECT 1 FROM ok)
    ON CONFLICT (workspace_id, id) DO UPDATE
    SET name = EXCLUDED.name, position = EXCLUDED.position, probability = EXCLUDED.probability,
        kind = EXCLUDED.kind
    WHERE (pipeline_stages.name, pipeline_stages.position, pipeline_stages.probability, pipeline_stages.kind)
        IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.position, EXCLUDED.probability, EXCLUDED.kind)
), ev AS (
    {insert_events("$11", "EXISTS (SELECT 1 FROM ok)")}
), fanout AS (
    {FANOUT_SQL}
)
SELECT count(*) FROM ok
"""


def _row(record: asyncpg.Record) -> dict[str, Any]:
    row = dict(record)
    row["stages"] = [
        {**s, "id": uuid.UUID(s["id"]), "probability": float(s["probability"])} for s in row["stages"]
    ]
    return row


# The lock is its own statement, before the read: a statement that waited for a lock still reads the
# stages as of its start, which would miss the edit it waited for. NO KEY UPDATE queues pipeline writers
# but not deal writes, whose foreign-key checks take KEY SHARE on the pipeline row (a plain FOR UPDATE
# would deadlock a stage removal against a deal entering that stage).
_LOCK_SQL = "SELECT id FROM pipelines WHERE workspace_id = $1 AND {} FOR NO KEY UPDATE"


async def fetch(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: uuid.UUID,
    pipeline_id: uuid.UUID,
    lock: bool = False,
) -> dict[str, Any] | None:
    if lock and await conn.fetchval(_LOCK_SQL.format("id = $2"), workspace_id, pipeline_id) is None:
        return None
    record = await conn.fetchrow(
        _SELECT + "WHERE p.workspace_id = $1 AND p.id = $2", workspace_id, pipeline_id
    )
    return _row(record) if record is not None else None


async def fetch_default(conn: asyncpg.Connection, workspace_id: uuid.UUID) -> dict[str, Any] | None:
    """The default pipeline, locked."""
    pipeline_id = await conn.fetchval(_LOCK_SQL.format("is_default"), workspace_id)
    return await fetch(conn, workspace_id, pipeline_id) if pipeline_id is not None else None


async def list_page(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: uuid.UUID,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
    include_archived: bool,
) -> list[dict[str, Any]]:
    sql = _SELECT + "WHERE p.workspace_id = $1 AND ($2 OR p.archived_at IS NULL)"
    args: list[Any] = [workspace_id, include_archived]
    if after is not None:
        sql += " AND (p.created_at, p.id) > ($3, $4)"
        args += list(after)
    sql += f" ORDER BY p.created_at, p.id LIMIT {int(limit) + 1}"
    return [_row(r) for r in await conn.fetch(sql, *args)]


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
        written: int = await conn.fetchval(
            _WRITE_SQL,
            workspace_id,
            row["id"],
            row["name"],
            row["is_default"],
            row["updated_at"] if not insert else row["created_at"],
            row["version"],
            row["archived_at"],
            insert,
            list(removed_stage_ids),
            jsonutil.dumps_str(row["stages"]),
            jsonutil.dumps_str(events),
        )
    except asyncpg.ForeignKeyViolationError:
        # a deal entered the stage between our check and the delete or the change of kind
        raise Conflict(
            "A deal entered the stage meanwhile; retry (with move_to_stage_id to remove it)"
        ) from None
    except asyncpg.UniqueViolationError:
        raise Conflict("Another pipeline became the default at the same time; retry") from None
    return written == 1
