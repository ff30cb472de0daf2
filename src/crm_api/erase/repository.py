"""The erase as one statement of data-modifying CTEs: the contact, its external ids, its activities, its
ticket comments, the stored event payloads about each of them, the webhook attempts that answered those
events, and the ``contact.erased`` event with its deliveries. Each part is set-based and index-backed.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from .. import jsonutil
from ..events.store import FANOUT_SQL, insert_events

# Contact fields that hold personal data; in stored event payloads they become null.
PERSONAL_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "phone",
    "title",
    "tags",
    "custom_fields",
    "external_ids",
    "marketing_consent_source",
)
ACTIVITY_FIELDS = ("subject", "body")
COMMENT_FIELDS = ("body",)


def _nulled(part: str) -> str:
    """``data->part`` with each of the row's ``keys`` that it holds set to JSON null (absent keys stay
    absent, so ``previous`` keeps meaning "the fields that changed")."""
    return f"""coalesce(e.data->'{part}', '{{}}'::jsonb) || coalesce(
        (SELECT jsonb_object_agg(k, NULL::jsonb) FROM unnest(s.keys) AS k WHERE e.data->'{part}' ? k),
        '{{}}'::jsonb)"""


_ERASE_SQL = f"""
WITH target AS (
    UPDATE contacts AS c
    SET email = NULL, first_name = NULL, last_name = NULL, phone = NULL, title = NULL,
        tags = '{{}}', custom_fields = '{{}}', external_ids = '{{}}',
        marketing_consent = false, marketing_consent_at = NULL, marketing_consent_source = NULL,
        search_text = '', archived_at = coalesce(c.archived_at, $3), erased_at = $3,
        updated_at = $3, version = c.version + 1
    WHERE c.workspace_id = $1 AND c.id = $2 AND c.erased_at IS NULL
    RETURNING c.id
), xids AS (
    DELETE FROM external_ids AS x
    WHERE x.workspace_id = $1 AND x.object_id = $2 AND x.object_type = 'contact'
      AND EXISTS (SELECT 1 FROM target)
    RETURNING 1
), solo AS (
    -- linked to this contact alone: its text is about this person, so it goes
    UPDATE activities AS a
    SET subject = NULL, body = NULL, search_text = '', updated_at = $3, version = a.version + 1
    WHERE a.workspace_id = $1 AND a.contact_ids @> ARRAY[$2::uuid] AND a.contact_ids <@ ARRAY[$2::uuid]
      AND EXISTS (SELECT 1 FROM target)
    RETURNING a.id
), shared AS (
    -- shared with other contacts: it is their record too, so only the link goes
    UPDATE activities AS a
    SET contact_ids = array_remove(a.contact_ids, $2::uuid), updated_at = $3, version = a.version + 1
    WHERE a.workspace_id = $1 AND a.contact_ids @> ARRAY[$2::uuid] AND NOT a.contact_ids <@ ARRAY[$2::uuid]
      AND EXISTS (SELECT 1 FROM target)
    RETURNING a.id
), comments AS (
    UPDATE ticket_comments AS tc
    SET body = '', search_text = '', updated_at = $3, version = tc.version + 1
    WHERE tc.workspace_id = $1 AND tc.author_type = 'requester' AND tc.author_id = $2
      AND EXISTS (SELECT 1 FROM target)
    RETURNING tc.id
), scrub(object_id, object_type, keys) AS (
    SELECT id, 'contact', $5::text[] FROM target
    UNION ALL SELECT id, 'activity', $6::text[] FROM solo
    UNION ALL SELECT id, 'ticket_comment', $7::text[] FROM comments
), scrubbed AS (
    UPDATE events AS e
    -- jsonb_set, not || jsonb_build_object: Citus refuses a STABLE function over columns in an UPDATE
    SET data = jsonb_set(
        jsonb_set(e.data, '{{object}}', {_nulled("object")}), '{{previous}}', {_nulled("previous")})
    FROM scrub AS s
    WHERE e.workspace_id = $1 AND e.object_id = s.object_id AND e.object_type = s.object_type
    RETURNING e.id
), attempts AS (
    -- a receiver's answer may echo the payload it was sent
    UPDATE webhook_attempts AS wa SET response_body = NULL
    FROM webhook_deliveries AS d
    WHERE d.workspace_id = $1 AND d.event_id IN (SELECT id FROM scrubbed)
      AND wa.workspace_id = $1 AND wa.delivery_id = d.id AND wa.response_body IS NOT NULL
    RETURNING wa.id
), ev AS (
    {insert_events("$4", "EXISTS (SELECT 1 FROM target)")}
), fanout AS (
    {FANOUT_SQL}
)
SELECT (SELECT count(*) FROM target) AS contacts,
       (SELECT count(*) FROM xids) AS external_ids,
       (SELECT count(*) FROM solo) AS activities_scrubbed,
       (SELECT count(*) FROM shared) AS activities_unlinked,
       (SELECT count(*) FROM comments) AS ticket_comments,
       (SELECT count(*) FROM scrubbed) AS events,
       (SELECT count(*) FROM attempts) AS webhook_attempts
"""


async def lock_contact(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, contact_id: uuid.UUID
) -> asyncpg.Record | None:
    """The contact's row, locked until commit so no write can slip in between the check and the erase."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, email, first_name, last_name, phone, title, marketing_consent_source, external_ids, "
        "erased_at FROM contacts WHERE workspace_id = $1 AND id = $2 FOR UPDATE",
        workspace_id,
        contact_id,
    )
    return row


async def erase(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    contact_id: uuid.UUID,
    at: Any,
    event: dict[str, Any],
) -> dict[str, int]:
    row = await conn.fetchrow(
        _ERASE_SQL,
        workspace_id,
        contact_id,
        at,
        jsonutil.dumps_str([event]),
        list(PERSONAL_FIELDS),
        list(ACTIVITY_FIELDS),
        list(COMMENT_FIELDS),
    )
    return {k: int(v) for k, v in dict(row).items()}


async def scrub_idempotency_records(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, contact_id: uuid.UUID, values: list[str]
) -> int:
    """Stored responses (kept for Idempotency-Key replays) that show this contact: each personal string
    value, as a whole JSON string, becomes null. The records stay, so a replayed request still cannot run
    twice; it answers with the personal data gone."""
    rows = await conn.fetch(
        "SELECT key, body FROM idempotency_keys WHERE workspace_id = $1 AND strpos(body, $2) > 0",
        workspace_id,
        str(contact_id),
    )
    needles = [jsonutil.dumps_str(v) for v in values if v]
    changed: list[tuple[str, str]] = []
    for r in rows:
        body = r["body"]
        for needle in needles:
            body = body.replace(needle, "null")
        if body != r["body"]:
            changed.append((r["key"], body))
    if changed:
        await conn.execute(
            "UPDATE idempotency_keys AS i SET body = u.body "
            "FROM unnest($2::text[], $3::text[]) AS u(key, body) WHERE i.workspace_id = $1 AND i.key = u.key",
            workspace_id,
            [k for k, _ in changed],
            [b for _, b in changed],
        )
    return len(changed)
