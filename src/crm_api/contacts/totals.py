"""A contact's totals, derived from other records: its lifetime value (its won, live deals summed per
currency) and its order count. Deal writes (``deals.spec``'s after_write), orders and merges refresh them;
each changed contact gets a new version and its ``contact.updated`` event."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from ..auth import Context
from ..resources import writes
from .spec import CONTACTS

# Every named contact, locked, beside its aggregates computed afresh: won, live deals it is the primary
# contact of, summed per currency, and the orders that name it. Set-based, so a batch's contacts cost the
# same one statement as one contact's.
_AGGREGATES_SQL = """
SELECT c.{columns},
       coalesce(v.ltv, '{{}}'::jsonb) AS new_lifetime_value, coalesce(n.orders, 0) AS new_order_count
FROM contacts AS c
LEFT JOIN LATERAL (
    SELECT jsonb_object_agg(s.currency, s.total::text) AS ltv
    FROM (
        SELECT d.currency, sum(d.amount) AS total FROM deals AS d
        WHERE d.workspace_id = c.workspace_id AND d.contact_id = c.id AND d.status = 'won'
          AND d.archived_at IS NULL AND d.amount IS NOT NULL AND d.currency IS NOT NULL
        GROUP BY d.currency
    ) AS s
) AS v ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS orders FROM orders AS o WHERE o.workspace_id = c.workspace_id AND o.contact_id = c.id
) AS n ON true
WHERE c.workspace_id = $1 AND c.id = ANY($2::uuid[])
ORDER BY c.id
FOR UPDATE OF c
"""


async def contact_aggregates(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, columns: Sequence[str], ids: Sequence[uuid.UUID]
) -> list[dict[str, Any]]:
    sql = _AGGREGATES_SQL.format(columns=", c.".join(columns))
    return [dict(r) for r in await conn.fetch(sql, workspace_id, sorted(set(ids)))]


async def refresh_contacts(conn: asyncpg.Connection, ctx: Context, ids: set[uuid.UUID]) -> None:
    """Recompute lifetime value and order count of the contacts, and write those that changed as one
    batch through the write pipeline, so each gets its ``contact.updated`` event and a new version.

    Upkeep of derived, read-only columns: the client rules are not run (``rules=False``), so an erased or
    merged contact's aggregates still follow its deals."""
    rows = await contact_aggregates(conn, ctx.workspace_id, CONTACTS.columns, list(ids))
    changes = []
    for row in rows:
        ltv, count = row.pop("new_lifetime_value"), row.pop("new_order_count")
        changes.append((row, {"lifetime_value": ltv, "order_count": count}))
    await writes.apply(conn, CONTACTS, ctx, changes, "updated", rules=False)
