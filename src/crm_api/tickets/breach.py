"""The SLA breach job: ``ticket.sla_breached`` once per ticket and target when a due time passes unmet.

It runs beside the webhook dispatcher (in ``crm-api worker`` and in ``serve``'s in-process dispatcher). Any
number may run: a claim locks overdue tickets with ``FOR UPDATE SKIP LOCKED``, so two runners never take
the same ticket, and the marker (``*_breached_at``) it sets, in the same version-checked statement as the
event and its webhook fan-out, keeps the ticket out of every later scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections import defaultdict
from typing import Any

import asyncpg
from sqlalchemy import DateTime, Integer, Select, select, tuple_, union

from .. import db, metrics, sql
from ..auth import SystemContext
from ..config import Settings
from ..events.emit import emit
from ..models.service_desk import FIRST_RESPONSE_RUNNING, RESOLUTION_RUNNING
from ..resources import writes
from .spec import TICKETS

log = logging.getLogger("crm_api.sla")


def _claim() -> Select[Any]:
    """Each branch matches one partial index (ix_tickets_*_unbreached) predicate for predicate (the statuses
    written in as constants, so the planner sees them); the outer query locks what they found and returns the
    rows as they are now (a row changed meanwhile is re-checked below).

    Parameters: ``now`` (what is due by then), ``batch`` (at most this many per target)."""
    t = sql.table("tickets")
    now = sql.param("now", DateTime(timezone=True))
    batch = sql.param("batch", Integer)
    first_response = (
        select(t.c.workspace_id, t.c.id)
        .where(
            t.c.first_response_breached_at.is_(None),
            t.c.first_responded_at.is_(None),
            t.c.first_response_due_at.is_not(None),
            t.c.archived_at.is_(None),
            t.c.status.in_([sql.const(s) for s in FIRST_RESPONSE_RUNNING]),
            t.c.first_response_due_at <= now,
        )
        .order_by(t.c.first_response_due_at)
        .limit(batch)
    )
    resolution = (
        select(t.c.workspace_id, t.c.id)
        .where(
            t.c.resolution_breached_at.is_(None),
            t.c.resolution_due_at.is_not(None),
            t.c.archived_at.is_(None),
            t.c.status.in_([sql.const(s) for s in RESOLUTION_RUNNING]),
            t.c.resolution_due_at <= now,
        )
        .order_by(t.c.resolution_due_at)
        .limit(batch)
    )
    # the branches read tickets on their own: not correlated with the outer query's tickets
    overdue = union(first_response.correlate(None), resolution.correlate(None))
    return (
        select(*sql.columns(TICKETS.columns, t))
        .where(tuple_(t.c.workspace_id, t.c.id).in_(overdue))
        .with_for_update(skip_locked=True)
    )


_CLAIM = sql.Query(_claim)


def breached_targets(row: dict[str, Any], now: dt.datetime) -> list[str]:
    """Which targets of this (locked, current) row are overdue and not yet reported."""
    targets = []
    if (
        row["first_response_breached_at"] is None
        and row["first_responded_at"] is None
        and row["first_response_due_at"] is not None
        and row["first_response_due_at"] <= now
        and row["archived_at"] is None
        and row["status"] in FIRST_RESPONSE_RUNNING
    ):
        targets.append("first_response")
    if (
        row["resolution_breached_at"] is None
        and row["resolution_due_at"] is not None
        and row["resolution_due_at"] <= now
        and row["archived_at"] is None
        and row["status"] in RESOLUTION_RUNNING
    ):
        targets.append("resolution")
    return targets


async def run_once(pool: asyncpg.Pool, batch: int = 500, now: dt.datetime | None = None) -> int:
    """One claim-and-emit round; returns the number of breach events written."""
    at = now or dt.datetime.now(dt.UTC)
    async with pool.acquire() as conn, conn.transaction():
        rows = [dict(r) for r in await _CLAIM.fetch(conn, now=at, batch=batch)]
        per_workspace: dict[uuid.UUID, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
        per_target: dict[str, int] = defaultdict(int)
        for row in rows:
            targets = breached_targets(row, at)
            if targets:
                per_workspace[row["workspace_id"]].append((row, {f"{t}_breached_at": at for t in targets}))
                for target in targets:
                    per_target[target] += 1
        for workspace_id, changes in per_workspace.items():
            # upkeep of the SLA markers, not a client's change: the ticket rules are not run, and the one
            # event per target is ``ticket.sla_breached`` rather than ``ticket.updated``
            actor = SystemContext(workspace_id, "system:sla")
            await writes.apply(
                conn, TICKETS, actor, changes, None, at=at, rules=False, events=_breach_events(actor, at)
            )
    for target, n in per_target.items():  # committed
        metrics.SLA_BREACHES.labels(target).inc(n)
    return sum(per_target.values())


def _breach_events(actor: SystemContext, at: dt.datetime) -> writes.Events:
    def events(old: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
        assert old is not None
        obj = TICKETS.to_api(new)
        out = []
        for target in ("first_response", "resolution"):
            if old[f"{target}_breached_at"] is None and new[f"{target}_breached_at"] is not None:
                previous = {f"{target}_breached_at": None}
                event = emit(actor, "ticket.sla_breached", TICKETS.object, new["id"], obj, previous, at)
                event["data"]["target"] = target
                event["data"]["due_at"] = old[f"{target}_due_at"]
                out.append(event)
        return out

    return events


async def run_forever(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event) -> None:
    """Every ``sla_check_seconds`` until ``stop``; a failed round is logged and retried next time."""
    every = settings.sla_check_seconds
    if every <= 0:
        return
    while not stop.is_set():
        try:
            while await run_once(pool) >= 500:
                pass  # a full batch: more may be waiting
            metrics.SLA_RUNS.labels("ok").inc()
        except db.ERRORS as exc:
            metrics.SLA_RUNS.labels("error").inc()
            log.warning("SLA breach check failed, retrying: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
