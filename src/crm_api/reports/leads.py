"""Lead conversion from what the triggers of migration 0036 keep, in two statements.

``leads`` (the contacts whose first entry into lead of the period falls in a bucket) is the count of entries
into lead with no earlier one (``prior_lead_at`` null) plus the entries whose previous one came before the
period. The first are summed per whole UTC hour from ``lead_deltas`` and ``lead_pending`` (not yet folded),
except the hours a bucket boundary cuts (a local midnight off the hour: India, Nepal) and the period's two
partial end hours, whose entries are read one by one from ``ix_contact_lifecycle_changes_leads``; the second
are few (a contact that left lead and came back), read from ``ix_contact_lifecycle_changes_repeat``.

``converted`` and the exact median need each converted lead's time to convert: the period's converted
entries, from ``ix_contact_lifecycle_changes_converted`` alone (a third of the leads at the bench's size).
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

import asyncpg
from sqlalchemy import DateTime, Integer, Select, Text, and_, any_, func, literal, or_, select
from sqlalchemy.dialects.postgresql import ARRAY

from .. import sql
from . import roomy
from .buckets import in_period, local_bucket
from .params import next_start, trunc
from .rollup import whole_hours

_HOUR = dt.timedelta(hours=1)
_STAMPS = ARRAY(DateTime(timezone=True))


def _stamp(name: str) -> Any:
    return sql.param(name, DateTime(timezone=True))


def hour_ranges(period: dict[str, Any]) -> dict[str, Any]:
    """The whole UTC hours of the period, the ones among them a bucket boundary cuts (``cut``), and the
    ranges read entry by entry (``base_from``/``base_to``: the two partial end hours and the cut hours)."""
    lower, upper = period["lower"], period["upper"]
    whole_from, whole_to = whole_hours(lower, upper)
    zone = zoneinfo.ZoneInfo(period["tz"])
    cut = []
    start = trunc(period["first_day"], period["unit"])
    while True:
        start = next_start(start, period["unit"])
        boundary = dt.datetime.combine(start, dt.time(), zone).astimezone(dt.UTC)
        if boundary >= whole_to:
            break
        hour = boundary.replace(minute=0, second=0, microsecond=0)
        if hour != boundary and hour >= whole_from:
            cut.append(hour)
    return {
        "whole_from": whole_from,
        "whole_to": whole_to,
        "cut": cut,
        "base_from": [lower, whole_to, *cut],
        "base_to": [whole_from, upper, *(h + _HOUR for h in cut)],
    }


@sql.shape
def _leads(by_source: bool, include_archived: bool) -> Select[Any]:
    h = sql.table("contact_lifecycle_changes")
    ws = sql.param("ws")
    lead = h.c.to_stage == sql.const("lead")  # in the text: the partial indexes' predicates
    rolled = [  # the folded sums and what writers appended since the last fold
        select(d.c.hour.label("at"), d.c.source, d.c.leads).where(
            d.c.workspace_id == ws,
            d.c.hour >= _stamp("whole_from"),
            d.c.hour < _stamp("whole_to"),
            ~(d.c.hour == any_(sql.param("cut", _STAMPS))),
            *([] if include_archived else [d.c.archived.is_(False)]),
        )
        for d in (sql.table("lead_deltas"), sql.table("lead_pending"))
    ]
    ranges = (
        func.unnest(sql.param("base_from", _STAMPS), sql.param("base_to", _STAMPS))
        .table_valued("f", "t")
        .render_derived(name="r")
    )
    one = literal(1, Integer)
    base = (
        select(h.c.changed_at, h.c.source, one)
        .select_from(h.join(ranges, and_(h.c.changed_at >= ranges.c.f, h.c.changed_at < ranges.c.t)))
        .where(h.c.workspace_id == ws, lead, h.c.prior_lead_at.is_(None))
    )
    again = select(h.c.changed_at, h.c.source, one).where(
        h.c.workspace_id == ws,
        lead,
        h.c.prior_lead_at.is_not(None),
        h.c.prior_lead_at < _stamp("lower"),
        in_period(h.c.changed_at),
    )
    if not include_archived:
        base = base.where(h.c.archived.is_(False))
        again = again.where(h.c.archived.is_(False))
    parts = rolled[0].union_all(rolled[1], base, again).subquery("parts")
    bucket = local_bucket(parts.c.at)
    group = parts.c.source if by_source else literal(None, Text)
    stmt = select(bucket.label("bucket"), group.label("grp"), func.sum(parts.c.leads).label("leads"))
    return stmt.group_by(bucket, parts.c.source) if by_source else stmt.group_by(bucket)


@sql.shape
def _converted(by_source: bool, include_archived: bool) -> Select[Any]:
    h = sql.table("contact_lifecycle_changes")
    bucket = local_bucket(h.c.changed_at)
    stmt = select(
        bucket.label("bucket"),
        (h.c.source if by_source else literal(None, Text)).label("grp"),
        func.count().label("converted"),
        func.percentile_cont(0.5).within_group(h.c.converted_at - h.c.changed_at).label("median"),
    ).where(
        h.c.workspace_id == sql.param("ws"),
        h.c.to_stage == sql.const("lead"),
        h.c.converted_at.is_not(None),
        in_period(h.c.changed_at),
        or_(h.c.prior_lead_at.is_(None), h.c.prior_lead_at < _stamp("lower")),
    )
    if not include_archived:
        stmt = stmt.where(h.c.archived.is_(False))
    return stmt.group_by(bucket, h.c.source) if by_source else stmt.group_by(bucket)


async def lead_conversion(
    conn: asyncpg.Pool | asyncpg.Connection,
    ws: uuid.UUID,
    by_source: bool,
    include_archived: bool,
    period: dict[str, Any],
) -> list[dict[str, Any]]:
    """Rows of ``bucket``, ``grp``, ``leads``, ``converted`` and ``median``, as the statement over the whole
    history answers them."""
    params = {k: period[k] for k in ("lower", "upper", "unit", "tz")}
    counts = await _leads(by_source, include_archived).fetch(conn, ws=ws, **params, **hour_ranges(period))
    converted = await roomy.fetch(conn, _converted(by_source, include_archived), ws=ws, **params)
    found = {(r["bucket"], r["grp"]): r for r in converted}
    rows = []
    for r in counts:
        if not r["leads"]:
            continue
        c = found.get((r["bucket"], r["grp"]))
        rows.append(
            {
                "bucket": r["bucket"],
                "grp": r["grp"],
                "leads": int(r["leads"]),
                "converted": c["converted"] if c else 0,
                "median": c["median"] if c else None,
            }
        )
    return rows
