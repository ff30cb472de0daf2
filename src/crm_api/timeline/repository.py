"""The timeline's SQL: one branch per kind of entry, each an index-ordered query of its own, merged by
``UNION ALL`` and cut to one keyset page in the database.

Every branch yields ``(kind, id, at, data)``; a page is ordered by ``(at, id)`` newest first, and each branch
reads at most a page past the cursor, so the cost of a page does not grow with the object's history.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

# The keyset condition and the page size are filled in per request: {at} is the branch's time expression.
_ACTIVITY = """SELECT 'activity' AS kind, a.id, coalesce(a.occurred_at, a.created_at) AS at,
        jsonb_build_object('type', a.type, 'subject', a.subject, 'body', a.body,
                           'direction', a.direction, 'due_at', a.due_at, 'completed_at', a.completed_at,
                           'owner_id', a.owner_id) AS data
    FROM activities AS a
    WHERE a.workspace_id = $1 AND a.{link} @> ARRAY[$2::uuid] AND a.archived_at IS NULL {keyset}"""

_STAGE_CHANGE = """SELECT 'stage_change' AS kind, s.id, s.changed_at AS at,
        jsonb_build_object('deal_id', s.deal_id, 'deal_name', d.name, 'pipeline_id', s.pipeline_id,
                           'from_stage_id', s.from_stage_id, 'from_stage_name', fs.name,
                           'to_stage_id', s.to_stage_id, 'to_stage_name', ts.name, 'actor', s.actor) AS data
    FROM deal_stage_changes AS s
    JOIN deals AS d ON d.workspace_id = s.workspace_id AND d.id = s.deal_id
    LEFT JOIN pipeline_stages AS fs ON fs.workspace_id = s.workspace_id AND fs.id = s.from_stage_id
    LEFT JOIN pipeline_stages AS ts ON ts.workspace_id = s.workspace_id AND ts.id = s.to_stage_id
    WHERE s.workspace_id = $1 AND ({deals}) {keyset}"""

_TICKET = """SELECT 'ticket' AS kind, t.id, t.created_at AS at,
        jsonb_build_object('subject', t.subject, 'status', t.status, 'priority', t.priority,
                           'channel', t.channel) AS data
    FROM tickets AS t
    WHERE t.workspace_id = $1 AND t.{link} = $2 AND t.archived_at IS NULL {keyset}"""

_COMMENT = """SELECT 'comment' AS kind, c.id, c.created_at AS at,
        jsonb_build_object('ticket_id', c.ticket_id, 'ticket_subject', t.subject, 'body', c.body,
                           'public', c.public, 'author_type', c.author_type, 'author_id', c.author_id) AS data
    FROM tickets AS t
    JOIN ticket_comments AS c ON c.workspace_id = t.workspace_id AND c.ticket_id = t.id
    WHERE t.workspace_id = $1 AND t.{link} = $2 {keyset}"""

# Field changes come from the event log (kept CRM_EVENT_RETENTION_DAYS): old and new values.
_FIELD_CHANGE = """SELECT 'field_change' AS kind, e.id, e.created_at AS at,
        jsonb_build_object('type', e.type, 'actor', e.actor, 'previous', e.data->'previous',
            'current', (SELECT coalesce(jsonb_object_agg(k, e.data->'object'->k), '{}'::jsonb)
                        FROM jsonb_object_keys(e.data->'previous') AS k)) AS data
    FROM events AS e
    WHERE e.workspace_id = $1 AND e.object_id = $2 AND e.type LIKE '{object}.%' {keyset}"""

_TIME = {
    "activity": "coalesce(a.occurred_at, a.created_at)",
    "stage_change": "s.changed_at",
    "ticket": "t.created_at",
    "comment": "c.created_at",
    "field_change": "e.created_at",
}
_ID = {
    "activity": "a.id",
    "stage_change": "s.id",
    "ticket": "t.id",
    "comment": "c.id",
    "field_change": "e.id",
}

# What each parent's timeline is made of.
BRANCHES: dict[str, dict[str, str]] = {
    "contact": {
        "activity": _ACTIVITY.replace("{link}", "contact_ids"),
        # a deal's contact_ids always hold its primary contact too
        "stage_change": _STAGE_CHANGE.replace("{deals}", "d.contact_ids @> ARRAY[$2::uuid]"),
        "ticket": _TICKET.replace("{link}", "requester_id"),
        "comment": _COMMENT.replace("{link}", "requester_id"),
        "field_change": _FIELD_CHANGE.replace("{object}", "contact"),
    },
    "company": {
        "activity": _ACTIVITY.replace("{link}", "company_ids"),
        "stage_change": _STAGE_CHANGE.replace("{deals}", "d.company_id = $2"),
        "ticket": _TICKET.replace("{link}", "company_id"),
        "comment": _COMMENT.replace("{link}", "company_id"),
        "field_change": _FIELD_CHANGE.replace("{object}", "company"),
    },
    "deal": {
        "activity": _ACTIVITY.replace("{link}", "deal_ids"),
        "stage_change": _STAGE_CHANGE.replace("{deals}", "s.deal_id = $2"),
        "field_change": _FIELD_CHANGE.replace("{object}", "deal"),
    },
}
KINDS = ("activity", "stage_change", "ticket", "comment", "field_change")


async def page(
    conn: asyncpg.Pool | asyncpg.Connection,
    parent: str,
    workspace_id: uuid.UUID,
    object_id: uuid.UUID,
    kinds: list[str],
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """``limit + 1`` entries newest first (the extra one tells the caller there is more)."""
    params: list[Any] = [workspace_id, object_id]
    if after is not None:
        params += [after[0], after[1]]
    parts = []
    for kind in kinds:
        template = BRANCHES[parent][kind]
        keyset = f"AND ({_TIME[kind]}, {_ID[kind]}) < ($3, $4)" if after is not None else ""
        parts.append(
            f"({template.replace('{keyset}', keyset)} ORDER BY {_TIME[kind]} DESC, {_ID[kind]} DESC "
            f"LIMIT {int(limit) + 1})"
        )
    sql = f"SELECT kind, id, at, data FROM ({' UNION ALL '.join(parts)}) AS x ORDER BY at DESC, id DESC "
    sql += f"LIMIT {int(limit) + 1}"
    return [dict(r) for r in await conn.fetch(sql, *params)]
