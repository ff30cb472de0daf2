"""Periodic housekeeping inside the API process: expired Idempotency-Key records and events past their
retention are deleted in small batches (short transactions, no long locks), so both tables stay the size of
one retention window. Events that a pending delivery still needs are kept until it settles."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from sqlalchemy import (
    Delete,
    Integer,
    Interval,
    cast,
    delete,
    func,
    select,
    tuple_,
)

from . import db, sql
from .config import Settings

log = logging.getLogger("crm_api.maintenance")

_IDEMPOTENCY_KEYS = sql.table("idempotency_keys")
_EVENTS = sql.table("events")
_DELIVERIES = sql.table("webhook_deliveries")

# ``n * interval '1 hour'``: make_interval(hours => n) as Core can say it (no named-argument calls)
_HOUR = cast(sql.const("1 hour"), Interval)
_DAY = cast(sql.const("1 day"), Interval)


def _delete_expired() -> Delete:
    """One batch (``batch``) of idempotency records older than ``ttl_hours``."""
    k = _IDEMPOTENCY_KEYS
    # by primary key, not ctid: a row's ctid means nothing across the shards of a distributed table
    expired = (
        select(k.c.workspace_id, k.c.key)
        .where(k.c.created_at < func.now() - sql.param("ttl_hours", Integer) * _HOUR)
        .limit(sql.param("batch", Integer))
    )
    return delete(k).where(tuple_(k.c.workspace_id, k.c.key).in_(expired))


_DELETE_EXPIRED = sql.Query(_delete_expired)


async def purge_idempotency_keys(pool: asyncpg.Pool, ttl_hours: int, batch: int = 1000) -> int:
    """Delete every expired record; returns how many."""
    total = 0
    while True:
        status = await _DELETE_EXPIRED.execute(pool, ttl_hours=ttl_hours, batch=batch)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch:
            return total


def _delete_old_events() -> Delete:
    """One batch (``batch``, oldest first) of events older than ``retention_days`` that no pending delivery
    still needs."""
    e, d = _EVENTS.alias("e"), _DELIVERIES.alias("d")
    still_needed = (
        select(sql.const(1))
        .where(
            d.c.workspace_id == e.c.workspace_id, d.c.event_id == e.c.id, d.c.status == sql.const("pending")
        )
        .exists()
    )
    old = (
        select(e.c.workspace_id, e.c.id)
        .where(e.c.created_at < func.now() - sql.param("retention_days", Integer) * _DAY, ~still_needed)
        .order_by(e.c.created_at)
        .limit(sql.param("batch", Integer))
    )
    return delete(_EVENTS).where(tuple_(_EVENTS.c.workspace_id, _EVENTS.c.id).in_(old))


_DELETE_OLD_EVENTS = sql.Query(_delete_old_events)


async def purge_events(pool: asyncpg.Pool, retention_days: int, batch: int = 1000) -> int:
    total = 0
    while True:
        status = await _DELETE_OLD_EVENTS.execute(pool, retention_days=retention_days, batch=batch)
        deleted = int(status.split()[-1])
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
        except db.ERRORS as exc:  # the next round retries; never kill the server
            log.warning("idempotency key cleanup failed: %s", exc)
        await asyncio.sleep(every_seconds)
