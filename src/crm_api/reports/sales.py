"""The sales reports' SQL: pipeline (now, or at a past moment from the stage history), forecast, win rate
and sales cycle. Each statement is Core, compiled once per shape (which filters it has); every one is
scoped by workspace and reads an index range (the indexes are named beside each statement; migration
0015 adds those the reports need).

Money is summed per currency (``GROUP BY currency``) and never across; Python formats it. Durations stay
``interval``s to the end (``avg`` and ``percentile_cont`` take them), so days are exact to the microsecond.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
import zoneinfo
from typing import Any

import asyncpg
from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Select,
    Text,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.sql.elements import ColumnElement

from .. import sql
from . import params, roomy
from .buckets import in_period
from .spans import restored_since


def _pipeline(by_id: bool) -> Select[Any]:
    p = sql.table("pipelines")
    stmt = select(p.c.id, p.c.name).where(p.c.workspace_id == sql.param("ws"))
    if by_id:
        return stmt.where(p.c.id == sql.param("pipeline_id", UUID))
    return stmt.where(p.c.is_default)  # uq_pipelines_default


_PIPELINE_BY_ID = sql.Query(lambda: _pipeline(True))
_DEFAULT_PIPELINE = sql.Query(lambda: _pipeline(False))


async def pipeline(
    conn: asyncpg.Pool | asyncpg.Connection, ws: uuid.UUID, pipeline_id: uuid.UUID | None
) -> dict[str, Any] | None:
    """The pipeline named, or the workspace's default; archived ones too (their history is still asked
    about)."""
    if pipeline_id is None:
        row = await _DEFAULT_PIPELINE.fetchrow(conn, ws=ws)
    else:
        row = await _PIPELINE_BY_ID.fetchrow(conn, ws=ws, pipeline_id=pipeline_id)
    return dict(row) if row is not None else None


def _stages() -> Select[Any]:
    s = sql.table("pipeline_stages")
    return (
        select(s.c.id, s.c.name, s.c.kind, s.c.probability, s.c.position)
        .where(s.c.workspace_id == sql.param("ws"), s.c.pipeline_id == sql.param("pipeline_id", UUID))
        .order_by(s.c.position)
    )


_STAGES = sql.Query(_stages)


async def stages(
    conn: asyncpg.Pool | asyncpg.Connection, ws: uuid.UUID, pipeline_id: uuid.UUID
) -> list[dict[str, Any]]:
    return [dict(r) for r in await _STAGES.fetch(conn, ws=ws, pipeline_id=pipeline_id)]


def _live(d: Any, include_archived: bool) -> ColumnElement[bool]:
    return literal(True) if include_archived else d.c.archived_at.is_(None)


@sql.shape
def _pipeline_now(by_owner: bool, include_archived: bool) -> Select[Any]:
    """Deals per stage and currency today: an index-only range of ix_deals_report_pipeline."""
    d = sql.table("deals")
    stmt = (
        select(d.c.stage_id, d.c.currency, func.count().label("deals"), func.sum(d.c.amount).label("amount"))
        .where(
            d.c.workspace_id == sql.param("ws"),
            d.c.pipeline_id == sql.param("pipeline_id", UUID),
            _live(d, include_archived),
        )
        .group_by(d.c.stage_id, d.c.currency)
    )
    if by_owner:
        stmt = stmt.where(d.c.owner_id == sql.param("owner_id", UUID))
    return stmt


@sql.shape
def _pipeline_then(by_owner: bool, include_archived: bool) -> Select[Any]:
    """Deals per stage and currency at ``as_of``: today's deals that existed then (and were live then),
    counted in today's stage, corrected for the deals that have moved since.

    A deal that moved since ``as_of`` has exactly one stay that covers it: the change with ``changed_at <=
    as_of < left_at`` (``left_at``, the deal's next change, kept at write time by migration 0027). Those
    stays are one range of ``ix_deal_stage_changes_left`` (partial on left stays, by ``left_at``; the
    stays left since ``as_of``, filtered on ``changed_at`` in the index), each moved deal then read by
    primary key: a few thousand rows, not a sort of every move since. A deal whose recorded history
    begins with a move after ``as_of`` (``opens_history``: older than the stage log kept; found on
    ``ix_deal_stage_changes_opens``) was where that move took it from. The totals are the pipeline's deals
    per today's stage (one pass, as the pipeline now), minus the moved deals where they are today, plus
    the moved deals where they were then (a stage of this pipeline: which also places a deal moved between
    pipelines since). Groups whose count nets to zero are dropped; a group whose amounts all net out but
    for nulls has a null sum (``valued``: how many amounts were summed), as a plain ``sum`` would."""
    h = sql.table("deal_stage_changes")
    d = sql.table("deals")
    s = sql.table("pipeline_stages")
    ws, as_of = sql.param("ws"), sql.param("as_of", DateTime(timezone=True))
    pipeline_id = sql.param("pipeline_id", UUID)

    def then(deals: Any) -> list[ColumnElement[bool]]:
        where = [deals.c.created_at <= as_of]
        if not include_archived:
            where.append(or_(deals.c.archived_at.is_(None), deals.c.archived_at > as_of))
            where.append(deals.c.id.not_in(restored_since("deal", ws, as_of)))  # archived then
        if by_owner:
            where.append(deals.c.owner_id == sql.param("owner_id", UUID))
        return where

    # where each deal that moved since was: the stay covering as_of, or, for a deal whose recorded history
    # begins with a move after it, where that move took it from
    o = h.alias("o")
    stays = union_all(
        select(h.c.deal_id, h.c.to_stage_id.label("then_stage")).where(
            h.c.workspace_id == ws, h.c.left_at > as_of, h.c.changed_at <= as_of
        ),
        select(o.c.deal_id, o.c.from_stage_id).where(
            o.c.workspace_id == ws, o.c.opens_history, o.c.changed_at > as_of
        ),
    ).subquery("stays")
    # each moved deal once, by primary key (LIMIT 1: a probe per stay, never a pass over every deal)
    m = d.alias("m")
    deal = (
        select(m.c.stage_id, m.c.pipeline_id, m.c.currency, m.c.amount)
        .where(m.c.workspace_id == ws, m.c.id == stays.c.deal_id, *then(m))
        .limit(1)
        .lateral("deal")
    )
    moved = (
        select(
            deal.c.stage_id.label("now_stage"),
            deal.c.pipeline_id.label("now_pipeline"),
            stays.c.then_stage,
            deal.c.currency,
            deal.c.amount,
        )
        .select_from(stays.join(deal, true()))
        .cte("moved")
        .prefix_with("MATERIALIZED")
    )
    ours = select(s.c.id).where(s.c.workspace_id == ws, s.c.pipeline_id == pipeline_id)

    def part(stage: Any, currency: Any, amount: Any, sign: int, *where: Any) -> Select[Any]:
        def signed(total: Any) -> Any:
            return total if sign > 0 else -total

        return (
            select(
                stage.label("stage_id"),
                currency.label("currency"),
                signed(func.count()).label("deals"),
                signed(func.sum(amount)).label("amount"),
                signed(func.count(amount)).label("valued"),
            )
            .where(*where)
            .group_by(stage, currency)
        )

    today = part(
        d.c.stage_id,
        d.c.currency,
        d.c.amount,
        1,
        d.c.workspace_id == ws,
        d.c.pipeline_id == pipeline_id,
        *then(d),
    )
    gone = part(moved.c.now_stage, moved.c.currency, moved.c.amount, -1, moved.c.now_pipeline == pipeline_id)
    back = part(
        moved.c.then_stage,
        moved.c.currency,
        moved.c.amount,
        1,
        moved.c.then_stage.in_(ours.scalar_subquery()),
    )
    parts = union_all(today, gone, back).subquery("parts")
    return (
        select(
            parts.c.stage_id,
            parts.c.currency,
            cast(func.sum(parts.c.deals), BigInteger).label("deals"),
            case((func.sum(parts.c.valued) > 0, func.sum(parts.c.amount))).label("amount"),
        )
        .group_by(parts.c.stage_id, parts.c.currency)
        .having(func.sum(parts.c.deals) > 0)
    )


async def pipeline_counts(
    conn: asyncpg.Pool | asyncpg.Connection,
    ws: uuid.UUID,
    pipeline_id: uuid.UUID,
    owner_id: uuid.UUID | None,
    as_of: dt.datetime | None,
    include_archived: bool,
) -> list[dict[str, Any]]:
    """``(stage_id, currency, deals, amount)`` rows; a stage without deals has none."""
    params: dict[str, Any] = {"ws": ws, "pipeline_id": pipeline_id}
    if owner_id is not None:
        params["owner_id"] = owner_id
    if as_of is None:
        stmt = _pipeline_now(owner_id is not None, include_archived)
    else:
        stmt = _pipeline_then(owner_id is not None, include_archived)
        params["as_of"] = as_of
        return [dict(r) for r in await roomy.fetch(conn, stmt, **params)]
    return [dict(r) for r in await stmt.fetch(conn, **params)]


_DAYS = ARRAY(Date)
_STAMPS = ARRAY(DateTime(timezone=True))


def bucket_ranges(period: dict[str, Any]) -> dict[str, Any]:
    """The period's buckets as ranges, for statements that read one index range per bucket: ``buckets``
    (each one's first day), ``day_from``/``day_to`` (its days, ``[from, to)``, cut to the period) and
    ``at_from``/``at_to`` (the same as UTC instants: local midnights in the period's zone)."""
    zone = zoneinfo.ZoneInfo(period["tz"])
    starts = params.Period(period["first_day"], period["last_day"], period["unit"], zone).buckets()
    days = [period["first_day"], *starts[1:], period["last_day"] + dt.timedelta(days=1)]
    stamps = [
        period["lower"],
        *(dt.datetime.combine(d, dt.time(), zone).astimezone(dt.UTC) for d in days[1:-1]),
    ]
    stamps.append(period["upper"])
    return {
        "buckets": starts,
        "day_from": days[:-1],
        "day_to": days[1:],
        "at_from": stamps[:-1],
        "at_to": stamps[1:],
    }


@sql.shape
def _forecast(by_pipeline: bool, by_owner: bool, include_archived: bool) -> Select[Any]:
    """Three parts, one statement: open deals expected in the period (``ix_deals_report_open``, partial on
    open deals, by expected close date), open deals with no date (the same index's null end), and deals won
    in the period (``ix_deals_report_closed``, by closed_at). Each part's rows: kind, bucket, owner,
    currency, deals, amount, and the amount weighted by the probability of the deal's stage.

    The dated parts read one index range per bucket (``bucket_ranges``, lateral): a deal's bucket is the
    range it was found in, not a time zone conversion and a hash of every row (the planner also counts
    the groups right: a few currencies per bucket, where it guessed one group per row of a computed
    bucket).

    Open deals are summed per stage first and weighted after, by the stage's probability: sum(amount) *
    probability per stage is the sum of the deals' weighted amounts, and the join then meets a few dozen
    rows instead of every deal."""
    d = sql.table("deals")
    s = sql.table("pipeline_stages")
    expected = d.c.expected_close_date

    def summed(per_stage: bool, *where: Any) -> Select[Any]:
        stmt = select(
            (d.c.owner_id if by_owner else literal(None, UUID)).label("owner_id"),
            d.c.currency,
            *([d.c.stage_id] if per_stage else []),
            func.count().label("deals"),
            func.sum(d.c.amount).label("amount"),
        ).where(d.c.workspace_id == sql.param("ws"), _live(d, include_archived), *where)
        if by_pipeline:
            stmt = stmt.where(d.c.pipeline_id == sql.param("pipeline_id", UUID))
        keys: list[Any] = [d.c.currency]
        if by_owner:
            keys.append(d.c.owner_id)
        if per_stage:
            keys.append(d.c.stage_id)
        return stmt.group_by(*keys)

    def per_bucket(lower: str, upper: str, column: Any, part: Any) -> Select[Any]:
        """``part`` (a select of ``summed``) for each bucket's range of ``column``, with the bucket."""
        kind = _STAMPS if lower.startswith("at") else _DAYS
        ranges = (
            func.unnest(sql.param("buckets", _DAYS), sql.param(lower, kind), sql.param(upper, kind))
            .table_valued("bucket", "lower", "upper")
            .render_derived(name=f"{lower}_r")
        )
        inner = part(column >= ranges.c.lower, column < ranges.c.upper).lateral(f"{lower}_part")
        return select(ranges.c.bucket, *[c for c in inner.c]).select_from(ranges.join(inner, true()))

    def weighted(kind: str, per_stage: Select[Any]) -> Select[Any]:
        t = per_stage.subquery(kind)
        stage = and_(s.c.workspace_id == sql.param("ws"), s.c.id == t.c.stage_id)
        return (
            select(
                literal(kind, Text).label("kind"),
                t.c.bucket,
                t.c.owner_id,
                t.c.currency,
                cast(func.sum(t.c.deals), BigInteger).label("deals"),
                func.sum(t.c.amount).label("amount"),
                func.sum(t.c.amount * s.c.probability).label("weighted"),
            )
            .select_from(t.join(s, stage))
            .group_by(t.c.bucket, t.c.owner_id, t.c.currency)
        )

    scheduled = per_bucket("day_from", "day_to", expected, lambda *r: summed(True, d.c.status == "open", *r))
    nulls = summed(True, d.c.status == "open", expected.is_(None)).subquery("nulls")
    unscheduled = select(cast(null(), Date).label("bucket"), *[c for c in nulls.c])
    won = per_bucket(
        "at_from", "at_to", d.c.closed_at, lambda *r: summed(False, d.c.status == "won", *r)
    ).subquery("won")
    return union_all(  # type: ignore[return-value]
        weighted("open", scheduled),
        weighted("unscheduled", unscheduled),
        select(
            literal("won", Text).label("kind"),
            won.c.bucket,
            won.c.owner_id,
            won.c.currency,
            won.c.deals,
            won.c.amount,
            cast(null(), d.c.amount.type).label("weighted"),
        ),
    )


async def forecast(
    conn: asyncpg.Pool | asyncpg.Connection,
    ws: uuid.UUID,
    pipeline_id: uuid.UUID | None,
    by_owner: bool,
    include_archived: bool,
    period: dict[str, Any],
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"ws": ws, **period}
    if pipeline_id is not None:
        params["pipeline_id"] = pipeline_id
    stmt = _forecast(pipeline_id is not None, by_owner, include_archived)
    return [dict(r) for r in await stmt.fetch(conn, **params, **bucket_ranges(period))]


WIN_RATE_GROUPS = ("owner", "pipeline", "source")


@sql.shape
def _win_rate(group_by: str | None, include_archived: bool) -> Select[Any]:
    """Deals closed in the period, by group, status, currency and lost reason: a range of
    ``ix_deals_report_closed`` (closed_at), which carries every column read."""
    d = sql.table("deals")
    groups = {"owner": d.c.owner_id, "pipeline": d.c.pipeline_id, "source": d.c.source}
    group = cast(groups[group_by], Text) if group_by else literal(None, Text)
    keys = [d.c.status, d.c.currency, d.c.lost_reason]
    if group_by:
        keys.insert(0, groups[group_by])
    return (
        select(
            group.label("grp"),
            d.c.status,
            d.c.currency,
            d.c.lost_reason,
            func.count().label("deals"),
            func.sum(d.c.amount).label("amount"),
        )
        .where(
            d.c.workspace_id == sql.param("ws"),
            in_period(d.c.closed_at),
            d.c.status != "open",  # a reopened deal has no closed_at; this says why the rows count
            _live(d, include_archived),
        )
        .group_by(*keys)
    )


async def win_rate(
    conn: asyncpg.Pool | asyncpg.Connection,
    ws: uuid.UUID,
    group_by: str | None,
    include_archived: bool,
    period: dict[str, Any],
) -> list[dict[str, Any]]:
    params = {"ws": ws, "lower": period["lower"], "upper": period["upper"]}
    return [dict(r) for r in await _win_rate(group_by, include_archived).fetch(conn, **params)]


@sql.shape
def _cycle_won(include_archived: bool) -> Select[Any]:
    """Deals of the pipeline won in the period: how long from creation to won (``ix_deals_report_closed``)."""
    d = sql.table("deals")
    took = d.c.closed_at - d.c.created_at
    return select(
        func.count().label("deals"),
        func.avg(took).label("mean"),
        func.percentile_cont(0.5).within_group(took).label("median"),
        func.percentile_cont(0.9).within_group(took).label("p90"),
    ).where(
        d.c.workspace_id == sql.param("ws"),
        in_period(d.c.closed_at),
        d.c.status == "won",
        d.c.pipeline_id == sql.param("pipeline_id", UUID),
        _live(d, include_archived),
    )


@sql.shape
def _cycle_stages(include_archived: bool) -> Select[Any]:
    """Per stage of the pipeline, the deals that entered it in the period and what became of them.

    Each change knows when the deal left the stage (``left_at``: its next change, in any pipeline) and
    whether a later change put it in an open stage of this pipeline further on, or in a won stage
    (``advanced``): triggers keep both at write time (migration 0027). It also knows the deal's previous
    entry into the same stage, and the previous one that advanced (migration 0037), so a deal is counted
    once per stage by a filtered ``count(*)``, not a ``count(DISTINCT deal_id)`` that sorts the entries.

    One aggregate per stage of the pipeline (a ``LATERAL`` over its stages), each over its own range of
    ``ix_deal_stage_changes_cycle`` (workspace, pipeline, stage, changed_at; covering): no sort of the
    period's entries by stage, and only an open stage's stays are sorted for the median (a closed stage is
    where a deal ends: the report shows no time spent there). A stage without entries in the period has no
    row."""
    h = sql.table("deal_stage_changes")
    d = sql.table("deals")
    s = sql.table("pipeline_stages")
    # a stay not over yet counts until now (now(): one instant for the whole statement)
    stayed = func.coalesce(h.c.left_at, func.now()) - h.c.changed_at
    is_open = s.c.kind == "open"

    def first(previous: Any) -> ColumnElement[bool]:
        # the deal's first such entry in the period: the one before it (if any) is before the period, so
        # counting these rows counts each deal once
        return or_(previous.is_(None), previous < sql.param("lower", DateTime(timezone=True)))

    per_stage = select(
        func.count().filter(first(h.c.prev_entered_at)).label("entered"),
        func.count().filter(h.c.advanced, first(h.c.prev_advanced_at)).label("advanced"),
        func.avg(stayed).filter(is_open).label("mean"),
        func.percentile_cont(0.5).within_group(stayed).filter(is_open).label("median"),
    ).where(
        h.c.workspace_id == s.c.workspace_id,
        h.c.pipeline_id == s.c.pipeline_id,
        h.c.to_stage_id == s.c.id,
        in_period(h.c.changed_at),
    )
    if not include_archived:
        # archived deals are few: an anti-join on their partial index, not a join with every deal
        gone = and_(d.c.workspace_id == h.c.workspace_id, d.c.id == h.c.deal_id, d.c.archived_at.is_not(None))
        per_stage = per_stage.where(~exists().where(gone))
    x = per_stage.lateral("x")
    return (
        select(s.c.id.label("stage_id"), x.c.entered, x.c.advanced, x.c.mean, x.c.median)
        .select_from(s.join(x, true()))
        .where(
            s.c.workspace_id == sql.param("ws"),
            s.c.pipeline_id == sql.param("pipeline_id", UUID),
            x.c.entered > 0,
        )
    )


async def sales_cycle(
    conn: asyncpg.Pool | asyncpg.Connection,
    ws: uuid.UUID,
    pipeline_id: uuid.UUID,
    include_archived: bool,
    period: dict[str, Any],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    params = {"ws": ws, "pipeline_id": pipeline_id, "lower": period["lower"], "upper": period["upper"]}
    won, per_stage = await asyncio.gather(
        _cycle_won(include_archived).fetchrow(conn, **params),
        roomy.fetch(conn, _cycle_stages(include_archived), **params),
    )
    return dict(won), [dict(r) for r in per_stage]
