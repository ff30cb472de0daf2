"""The webhook outbox as ``/metrics`` shows it: deliveries due and not yet sent, and how long the oldest has
waited. Measured at scrape time by one statement over the enabled endpoints, reading each one's due range
in the claim's index (one probe when none is due), so retries scheduled far ahead and the parked backlog of
disabled endpoints cost nothing. No recursive walk: Citus runs it as a plain co-located read."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, extract, func, select

from .. import sql
from ..db import EnginePool
from ..metrics import ScrapeGauge

_DELIVERIES = sql.table("webhook_deliveries")
_ENDPOINTS = sql.table("webhook_endpoints")
_PENDING = sql.const("pending")
_ENABLED = sql.const("enabled")
PER_ENDPOINT_CAP = 1_000
"""Due deliveries counted per endpoint at most, so a scrape reads at most this many entries per queue (and
their heap pages, where the visibility map is behind); the age gauge says how far behind a queue is."""


def _backlog() -> Select[Any]:
    ep = _ENDPOINTS.alias("ep")
    due = _DELIVERIES.alias("due")
    # the claim's own index (ix_webhook_deliveries_queue): each endpoint's pending deliveries by due time;
    # the workspace too, so that Citus finds each endpoint's deliveries on its own shard
    in_queue = (
        due.c.workspace_id == ep.c.workspace_id,
        due.c.endpoint_id == ep.c.id,
        due.c.status == _PENDING,
    )
    is_due = due.c.next_attempt_at <= func.now()
    some_due = (
        select(sql.const(1))
        .where(*in_queue, is_due)
        .limit(sql.const(PER_ENDPOINT_CAP))
        .correlate(ep)
        .subquery("some_due")
    )
    per_endpoint = (
        select(
            select(func.count()).select_from(some_due).scalar_subquery().label("n"),
            select(func.min(due.c.next_attempt_at)).where(*in_queue, is_due).scalar_subquery().label("head"),
        )
        .where(ep.c.status == _ENABLED)
        .subquery("per_endpoint")
    )
    return select(
        func.coalesce(func.sum(per_endpoint.c.n), sql.const(0)).label("due"),
        func.coalesce(extract("epoch", func.now() - func.min(per_endpoint.c.head)), sql.const(0)).label(
            "age"
        ),
    )


_BACKLOG = sql.Query(_backlog)


async def measure(pool: EnginePool) -> Iterable[ScrapeGauge]:
    row = await _BACKLOG.fetchrow(pool)
    return [
        (
            "crm_webhook_outbox_due",
            f"Webhook deliveries due and not yet sent (counted up to {PER_ENDPOINT_CAP} per endpoint)",
            float(row["due"]),
        ),
        (
            "crm_webhook_outbox_oldest_due_age_seconds",
            "How long the oldest due delivery has waited for the dispatcher (0: none is due)",
            float(row["age"]),
        ),
    ]
