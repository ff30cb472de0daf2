"""The webhook outbox as ``/metrics`` shows it: deliveries due and not yet sent, and how long the oldest has
waited. Measured at scrape time by one statement that walks the queues as the dispatcher's claim does (one
index probe per endpoint with pending deliveries, then each one's due range), so a parked backlog or
retries scheduled far ahead cost nothing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, extract, func, select, true

from .. import sql
from ..db import EnginePool
from ..metrics import ScrapeGauge

_DELIVERIES = sql.table("webhook_deliveries")
_PENDING = sql.const("pending")
PER_ENDPOINT_CAP = 1_000
"""Due deliveries counted per endpoint at most, so a scrape reads at most this many entries per queue (and
their heap pages, where the visibility map is behind); the age gauge says how far behind a queue is."""


def _backlog() -> Select[Any]:
    d = _DELIVERIES.alias("d")
    first = (
        select(d.c.endpoint_id).where(d.c.status == _PENDING).order_by(d.c.endpoint_id).limit(sql.const(1))
    )
    queues = first.cte("queues", recursive=True)
    q = queues.alias("q")
    nxt = (
        select(d.c.endpoint_id)
        .where(d.c.status == _PENDING, d.c.endpoint_id > q.c.endpoint_id)
        .order_by(d.c.endpoint_id)
        .limit(sql.const(1))
        .lateral("nxt")
    )
    queues = queues.union_all(select(nxt.c.endpoint_id).select_from(q.join(nxt, true())))

    due = _DELIVERIES.alias("due")
    in_queue = (due.c.endpoint_id == queues.c.endpoint_id, due.c.status == _PENDING)
    is_due = due.c.next_attempt_at <= func.now()
    some_due = (
        select(sql.const(1))
        .where(*in_queue, is_due)
        .limit(sql.const(PER_ENDPOINT_CAP))
        .correlate(queues)
        .subquery("some_due")
    )
    per_queue = (
        select(
            select(func.count()).select_from(some_due).scalar_subquery().label("n"),
            select(func.min(due.c.next_attempt_at)).where(*in_queue, is_due).scalar_subquery().label("head"),
        )
        .select_from(queues)
        .subquery("per_queue")
    )
    return select(
        func.coalesce(func.sum(per_queue.c.n), sql.const(0)).label("due"),
        func.coalesce(extract("epoch", func.now() - func.min(per_queue.c.head)), sql.const(0)).label("age"),
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
