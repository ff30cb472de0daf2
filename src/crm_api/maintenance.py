"""Periodic housekeeping inside the API process: expired Idempotency-Key records are deleted in small
batches (short transactions, no long locks), so the table stays the size of one retention window."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

log = logging.getLogger("crm_api.maintenance")

_DELETE_EXPIRED = """
DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1) LIMIT $2
))
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


async def run_forever(pool: asyncpg.Pool, ttl_hours: int, every_seconds: float = 3600.0) -> None:
    while True:
        try:
            deleted = await purge_idempotency_keys(pool, ttl_hours)
            if deleted:
                log.info("deleted %d expired idempotency keys", deleted)
        except (asyncpg.PostgresError, OSError) as exc:  # the next round retries; never kill the server
            log.warning("idempotency key cleanup failed: %s", exc)
        await asyncio.sleep(every_seconds)
