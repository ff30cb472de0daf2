"""Periodic housekeeping inside the API process: expired Idempotency-Key records and events past their
retention are deleted in small batches (short transactions, no long locks), so both tables stay the size of
one retention window. Events that a pending delivery still needs are kept until it settles."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from .config import Settings

log = logging.getLogger("crm_api.maintenance")

# By primary key, not ctid: a row's ctid means nothing across the shards of a distributed table.
_DELETE_EXPIRED = """
DELETE FROM idempotency_keys WHERE (workspace_id, key) IN (
    SELECT workspace_id, key FROM idempotency_keys
    WHERE created_at < now() - make_interval(hours => $1) LIMIT $2
)
"""


async def purge_idempotency_keys(pool: asyncpg.Pool, ttl_hours: int, batch: int = 1000) -> int:
    """Delete every expired record; returns how many."""
    total = 0
    while True:
        status = await pool.execute(_DELETE_EXPIRED, ttl_hours, batch)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch:
            return total


_DELETE_OLD_EVENTS = """
DELETE FROM events WHERE (workspace_id, id) IN (
    SELECT e.workspace_id, e.id FROM events AS e
    WHERE e.created_at < now() - make_interval(days => $1)
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries AS d
                      WHERE d.workspace_id = e.workspace_id AND d.event_id = e.id AND d.status = 'pending')
    ORDER BY e.created_at LIMIT $2
)
"""


async def purge_events(pool: asyncpg.Pool, retention_days: int, batch: int = 1000) -> int:
    total = 0
    while True:
        deleted = int((await pool.execute(_DELETE_OLD_EVENTS, retention_days, batch)).split()[-1])
        total += deleted
        if deleted < batch:
            return total


async def run_forever(pool: asyncpg.Pool, settings: Settings, every_seconds: float = 3600.0) -> None:
    while True:
        try:
            deleted = await purge_idempotency_keys(pool, settings.idempotency_ttl_hours)
            if deleted:
                log.info("deleted %d expired idempotency keys", deleted)
            deleted = await purge_events(pool, settings.event_retention_days)
            if deleted:
                log.info("deleted %d events past retention", deleted)
        except (asyncpg.PostgresError, OSError) as exc:  # the next round retries; never kill the server
            log.warning("idempotency key cleanup failed: %s", exc)
        await asyncio.sleep(every_seconds)
