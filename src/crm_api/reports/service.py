"""The service report's SQL: tickets created in the period, by group, with their response and resolution
times and how they kept their SLA targets. One statement, a range of ``ix_tickets_report_created``
(workspace, created_at), which carries every column it reads.

Times stay ``interval``s until formatted (``percentile_cont`` takes them), so minutes are exact.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from sqlalchemy import DateTime, Select, Text, and_, cast, func, literal, or_, select

from .. import sql

SERVICE_GROUPS = ("priority", "assignee", "channel")


@sql.shape
def _service(group_by: str | None, include_archived: bool) -> Select[Any]:
    t = sql.table("tickets")
    groups = {"priority": t.c.priority, "assignee": t.c.assignee_id, "channel": t.c.channel}
    group = cast(groups[group_by], Text) if group_by else literal(None, Text)
    responded = t.c.first_responded_at - t.c.created_at
    solved = t.c.solved_at - t.c.created_at
    now = func.now()  # one instant for the whole statement
    # an outcome is known once the ticket met the target or the due time passed; a target still running is
    # neither met nor missed yet
    fr_due, res_due = t.c.first_response_due_at, t.c.resolution_due_at
    fr_met = and_(fr_due.is_not(None), t.c.first_responded_at <= fr_due)
    fr_known = and_(fr_due.is_not(None), or_(t.c.first_responded_at.is_not(None), fr_due <= now))
    res_met = and_(res_due.is_not(None), t.c.solved_at <= res_due)
    res_known = and_(res_due.is_not(None), or_(t.c.solved_at.is_not(None), res_due <= now))
    stmt = select(
        group.label("grp"),
        func.count().label("created"),
        func.count(t.c.solved_at).label("resolved"),
        func.percentile_cont(0.5).within_group(responded).label("first_response_median"),
        func.percentile_cont(0.9).within_group(responded).label("first_response_p90"),
        func.percentile_cont(0.5).within_group(solved).label("resolution_median"),
        func.percentile_cont(0.9).within_group(solved).label("resolution_p90"),
        func.count().filter(fr_met).label("first_response_met"),
        func.count().filter(fr_known).label("first_response_known"),
        func.count().filter(res_met).label("resolution_met"),
        func.count().filter(res_known).label("resolution_known"),
        (func.count(t.c.first_response_breached_at) + func.count(t.c.resolution_breached_at)).label(
            "breaches"
        ),
    ).where(
        t.c.workspace_id == sql.param("ws"),
        t.c.created_at >= sql.param("lower", DateTime(timezone=True)),
        t.c.created_at < sql.param("upper", DateTime(timezone=True)),
    )
    if not include_archived:
        stmt = stmt.where(t.c.archived_at.is_(None))
    if group_by:
        stmt = stmt.group_by(groups[group_by])
    return stmt


async def service(
    conn: asyncpg.Pool | asyncpg.Connection,
    ws: uuid.UUID,
    group_by: str | None,
    include_archived: bool,
    period: dict[str, Any],
) -> list[dict[str, Any]]:
    params = {"ws": ws, "lower": period["lower"], "upper": period["upper"]}
    return [dict(r) for r in await _service(group_by, include_archived).fetch(conn, **params)]
