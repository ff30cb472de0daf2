"""History's SQL: the object's events walked newest first on ``ix_events_object`` (workspace_id,
object_id, sequence), each fanned out into one row per field it changed.

A ``.created`` event sets every field it shows (old value null; empty values left out); any other event
changed the fields named in ``data.previous``. Events a spec derives from an update (``deal.won``,
``ticket.status_changed``...) repeat that update's ``previous`` and are skipped, so a change shows once.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from ..events.types import DERIVED  # the same change as the ``.updated`` event written beside them

# on a create, these are the record's frame, not fields set by the caller
_FRAME = ("id", "object", "created_at", "updated_at", "version")

_SQL = """
SELECT e.sequence, e.id AS event_id, e.type AS event_type, e.created_at AS at, e.actor, e.request_id,
       f.field, f.old_value, f.new_value
FROM events AS e
CROSS JOIN LATERAL (
    SELECT k AS field,
           CASE WHEN e.type = $3 THEN 'null'::jsonb ELSE e.data->'previous'->k END AS old_value,
           e.data->'object'->k AS new_value
    FROM jsonb_object_keys(
        CASE WHEN e.type = $3 THEN e.data->'object' ELSE coalesce(e.data->'previous', '{}'::jsonb) END
    ) AS k
) AS f
WHERE e.workspace_id = $1 AND e.object_id = $2 AND e.object_type = $4 AND e.type <> ALL($5::text[])
  AND NOT (e.type = $3 AND (f.field = ANY($6::text[])
           OR coalesce(f.new_value, 'null'::jsonb) IN ('null'::jsonb, '[]'::jsonb, '{}'::jsonb)))
  {extra}
ORDER BY e.sequence DESC, f.field ASC
LIMIT {limit}
"""


async def page(
    conn: asyncpg.Pool | asyncpg.Connection,
    object_type: str,
    workspace_id: uuid.UUID,
    object_id: uuid.UUID,
    field: str | None,
    after: tuple[int, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """``limit + 1`` changes, newest first; within one event by field name."""
    params: list[Any] = [
        workspace_id,
        object_id,
        f"{object_type}.created",
        object_type,
        list(DERIVED),
        list(_FRAME),
    ]
    extra = []
    if field is not None:
        params.append(field)
        extra.append(f"AND f.field = ${len(params)}")
    if after is not None:
        params += [after[0], after[1]]
        s, n = len(params) - 1, len(params)
        # sequence first, so the scan starts at the cursor in the index
        extra.append(f"AND e.sequence <= ${s} AND (e.sequence < ${s} OR f.field > ${n})")
    sql = _SQL.replace("{extra}", " ".join(extra)).replace("{limit}", str(int(limit) + 1))
    return [dict(r) for r in await conn.fetch(sql, *params)]
