"""The event log's SQL, which writers fold into their own statement (one round trip, and an event cannot
exist without the change it records, or the reverse): the ``ev`` CTE that inserts a statement's events,
and the fan-out that queues a delivery for each endpoint that gets the event (``webhooks.matching``).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from ..webhooks.matching import ENDPOINT_GETS_EVENT

EVENT_COLUMNS = "workspace_id, id, type, object_type, object_id, actor, request_id, data, created_at"


def insert_events(events: str, only_if: str) -> str:
    """The body of an ``ev`` CTE: insert the events of the jsonb array parameter ``events`` (``$4``) for
    which ``only_if`` holds (``e`` is the event), returning what ``FANOUT_SQL`` reads."""
    return f"""INSERT INTO events ({EVENT_COLUMNS})
    SELECT {EVENT_COLUMNS} FROM jsonb_populate_recordset(NULL::events, {events}::jsonb) WITH ORDINALITY AS e
    WHERE {only_if}
    -- sequences follow the order the events were emitted in (created before won), whatever join the
    -- planner picks for the filter above (a hash join reordered them on PostgreSQL 18)
    ORDER BY e.ordinality
    RETURNING id, sequence, type, object_id"""


# One delivery per (event, endpoint that gets it); an endpoint disabled for failing gets its deliveries
# parked. Used inside a statement that has a CTE ``ev(id, sequence, type, object_id)`` and the workspace
# as $1.
FANOUT_SQL = f"""INSERT INTO webhook_deliveries
        (workspace_id, id, endpoint_id, event_id, event_sequence, event_type, object_id, next_attempt_at)
    SELECT $1, gen_random_uuid(), ep.id, ev.id, ev.sequence, ev.type, ev.object_id,
           CASE WHEN ep.status = 'enabled' THEN now() ELSE 'infinity' END
    FROM ev JOIN webhook_endpoints AS ep ON ep.workspace_id = $1
        AND {ENDPOINT_GETS_EVENT}"""


async def insert_test_event(
    conn: asyncpg.Connection, ws: uuid.UUID, endpoint_id: uuid.UUID, event: dict[str, Any]
) -> uuid.UUID:
    """A ``webhook.test`` event and its one delivery, to this endpoint only."""
    delivery_id: uuid.UUID = await conn.fetchval(
        """
        WITH ev AS (
            INSERT INTO events
                (workspace_id, id, type, object_type, object_id, actor, request_id, data, created_at)
            VALUES ($1, $2, 'webhook.test', 'webhook_endpoint', $3, $4, $5, $6::jsonb, $7)
            RETURNING id, sequence, type, object_id
        )
        INSERT INTO webhook_deliveries
            (workspace_id, id, endpoint_id, event_id, event_sequence, event_type, object_id)
        SELECT $1, gen_random_uuid(), $3, ev.id, ev.sequence, ev.type, ev.object_id FROM ev
        RETURNING id
        """,
        ws,
        event["id"],
        endpoint_id,
        event["actor"],
        event["request_id"],
        event["data"],
        event["created_at"],
    )
    return delivery_id
