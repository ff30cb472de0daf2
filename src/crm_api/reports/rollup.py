"""Attribution from the roll-up (migration 0036), and the job that folds its deltas.

The report's period ``[lower, upper)`` splits into whole UTC hours, ``[whole_from, whole_to)``, summed from
``attribution_deltas`` (the folded sums) and ``attribution_pending`` (what writers appended since the last
fold: the sum is the same either way), and the two
partial hours at its ends (local midnights are not always on the hour: India, Nepal), read contact by
contact from ``contact_attribution`` on ``ix_contact_attribution_created``. Both are kept in the writing
transaction by the triggers, so the answer is exact in any time zone and for any dates.

The fold (of these and of ``lead_pending``/``lead_deltas``, the lead conversion's) empties the pending table
(migration 0041: no index there, so a writer appends a bare heap tuple) and replaces, for each (workspace,
hour) it had rows of, that hour's folded rows and the pending ones by one row per (source, archived,
currency) with their sums, in one statement (delete returning, insert the sums). Writers keep appending
meanwhile: a row committed after the fold's snapshot is not deleted and waits for the next fold. One fold at
a time (an advisory lock; another worker's fold skips its turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import uuid
from typing import Any

import asyncpg
from sqlalchemy import DateTime, Integer, Numeric, Select, Text, and_, cast, func, literal, or_, select

from .. import db, locks, sql

log = logging.getLogger("crm_api.reports.rollup")

FOLD_LOCK = locks.lock_hash("reports", "attribution", "fold")
_HOUR = dt.timedelta(hours=1)


def whole_hours(lower: dt.datetime, upper: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The whole UTC hours inside ``[lower, upper)``: ``[whole_from, whole_to)`` (none: both ``lower``)."""
    floor = upper.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    start = lower.astimezone(dt.UTC)
    ceil = start.replace(minute=0, second=0, microsecond=0)
    if ceil < start:
        ceil += _HOUR
    return (ceil, floor) if ceil <= floor else (lower, lower)


def _stamp(name: str) -> Any:
    return sql.param(name, DateTime(timezone=True))


@sql.shape
def _attribution(include_archived: bool) -> Select[Any]:
    """Per source and currency (null: the counts), the whole hours' deltas plus the edges' contacts."""
    a = sql.table("contact_attribution")
    ws = sql.param("ws")
    rolled = [
        select(d.c.source, d.c.currency, d.c.contacts, d.c.leads, d.c.customers, d.c.amount).where(
            d.c.workspace_id == ws,
            d.c.hour >= _stamp("whole_from"),
            d.c.hour < _stamp("whole_to"),
            *([] if include_archived else [d.c.archived.is_(False)]),
        )
        for d in (sql.table("attribution_deltas"), sql.table("attribution_pending"))
    ]
    edges = [
        a.c.workspace_id == ws,
        or_(
            and_(a.c.created_at >= _stamp("lower"), a.c.created_at < _stamp("whole_from")),
            and_(a.c.created_at >= _stamp("whole_to"), a.c.created_at < _stamp("upper")),
        ),
    ]
    if not include_archived:
        edges.append(a.c.archived.is_(False))
    one = literal(1, Integer)
    counted = select(
        a.c.source,
        literal(None, Text).label("currency"),
        one.label("contacts"),
        cast(a.c.ever_lead, Integer).label("leads"),
        cast(a.c.buyer, Integer).label("customers"),
        literal(None, Numeric).label("amount"),
    ).where(*edges)
    each = func.jsonb_each_text(a.c.won).table_valued("key", "value").lateral("e")
    won = (
        select(
            a.c.source,
            each.c.key,
            one,
            literal(0, Integer),
            literal(0, Integer),
            cast(each.c.value, Numeric),
        )
        .select_from(a.join(each, literal(True)))
        .where(*edges)
    )
    parts = rolled[0].union_all(rolled[1], counted, won).subquery("parts")
    return select(
        parts.c.source.label("grp"),
        parts.c.currency,
        func.sum(parts.c.contacts).label("contacts"),
        func.sum(parts.c.leads).label("leads"),
        func.sum(parts.c.customers).label("customers"),
        func.sum(parts.c.amount).label("amount"),
    ).group_by(parts.c.source, parts.c.currency)


async def attribution(
    conn: asyncpg.Pool | asyncpg.Connection, ws: uuid.UUID, include_archived: bool, period: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The counts and the won amounts as the slow statements of ``acquisition`` answer them."""
    lower, upper = period["lower"], period["upper"]
    whole_from, whole_to = whole_hours(lower, upper)
    rows = await _attribution(include_archived).fetch(
        conn, ws=ws, lower=lower, upper=upper, whole_from=whole_from, whole_to=whole_to
    )
    counts = [
        {
            "grp": r["grp"],
            "contacts": int(r["contacts"]),
            "leads": int(r["leads"]),
            "customers": int(r["customers"]),
        }
        for r in rows
        if r["currency"] is None and r["contacts"] > 0
    ]
    won = [
        {"grp": r["grp"], "currency": r["currency"], "amount": r["amount"]}
        for r in rows
        if r["currency"] is not None and r["contacts"] > 0
    ]
    return counts, won


_FOLD = """
WITH moved AS (
    DELETE FROM {pending} RETURNING workspace_id, hour, source, archived, {columns}
),
touched AS (
    SELECT DISTINCT workspace_id, hour FROM moved
),
gone AS (
    DELETE FROM {table} AS d USING touched AS t
    WHERE d.workspace_id = t.workspace_id AND d.hour = t.hour
    RETURNING d.workspace_id, d.hour, d.source, d.archived, {returning}
)
INSERT INTO {table} (workspace_id, hour, source, archived, {columns})
SELECT workspace_id, hour, source, archived, {sums}
FROM (SELECT * FROM gone UNION ALL SELECT * FROM moved) AS r
GROUP BY workspace_id, hour, source, archived{group}
HAVING {nonzero}
"""

_FOLDS = [
    _FOLD.format(
        pending="attribution_pending",
        table="attribution_deltas",
        returning="d.currency, d.contacts, d.leads, d.customers, d.amount",
        columns="currency, contacts, leads, customers, amount",
        sums="currency, sum(contacts), sum(leads), sum(customers), sum(amount)",
        group=", currency",
        nonzero=(
            "sum(contacts) <> 0 OR sum(leads) <> 0 OR sum(customers) <> 0 OR coalesce(sum(amount), 0) <> 0"
        ),
    ),
    _FOLD.format(
        pending="lead_pending",
        table="lead_deltas",
        returning="d.leads",
        columns="leads",
        sums="sum(leads)",
        group="",
        nonzero="sum(leads) <> 0",
    ),
]


async def fold(pool: asyncpg.Pool | asyncpg.Connection, wait: bool = False) -> bool:
    """Fold every pending delta; False when another fold holds the lock (unless ``wait``: then wait
    for it, and fold what it left)."""
    if isinstance(pool, asyncpg.Connection):
        return await _fold(pool, wait)
    async with pool.acquire() as conn:
        return await _fold(conn, wait)


async def _fold(conn: asyncpg.Connection, wait: bool) -> bool:
    async with conn.transaction():
        if wait:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", FOLD_LOCK)
        elif not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", FOLD_LOCK):
            return False
        for statement in _FOLDS:
            await conn.execute(statement)
        return True


async def fold_forever(pool: asyncpg.Pool, stop: asyncio.Event, every_seconds: float = 10.0) -> None:
    """The fold, every ``every_seconds`` until ``stop``; a failure waits for the next turn. The first waits
    part of a turn (at random, so processes started together do not fold together): at start-up the
    process's other jobs take their connections at once, and a small pool would keep a request waiting."""
    wait = every_seconds * random.uniform(0.5, 1.0)
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
        if stop.is_set():
            return
        wait = every_seconds
        try:
            await fold(pool)
        except db.ERRORS as exc:
            log.warning("attribution fold failed: %s", exc)
