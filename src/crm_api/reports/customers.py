"""The customers report's SQL: who bought, for how much, whether they came back, who stopped.

A purchase is a paid or fulfilled order (at ``placed_at``, else when it was first pushed), or a won deal
that no order stands behind (at ``closed_at``): an order is also a won deal, and counting both would count
it twice. A customer is a contact live at ``as_of`` with at least one purchase by then: like the pipeline's
``as_of``, a contact or a won deal archived after ``as_of`` (merged ones too: a merge archives them) was
live then and counts, one archived by then does not (nor one archived then and restored since:
``archive_spans``); a deal won then and reopened or lost since, and an order paid then and refunded or
cancelled since, were purchases then (``_left_won``). Two statements share the purchases: the summary
(lifetime value in one currency, repeat and churn) and the monthly cohorts.

Purchases are read per workspace from ``ix_orders_report_paid`` (partial on paid and fulfilled orders) and
``ix_deals_report_closed``, both carrying what is read; the deals orders stand behind from ``ix_orders_deal``
(one set); archived contacts on their partial index. For live records, the kept rows answer instead
(``_kept``): ``contact_purchases``, ``contact_purchase_values`` (migrations 0037, 0043).
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

import asyncpg
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    DateTime,
    Float,
    Select,
    Text,
    and_,
    case,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.sql.elements import Grouping
from sqlalchemy.sql.selectable import CTE, Subquery

from .. import sql
from . import params, roomy
from .spans import restored_since

_STAMPS = ARRAY(DateTime(timezone=True))
_DAYS = ARRAY(Date)


def _left_won(ws: Any, as_of: Any, include_archived: bool) -> Select[Any]:
    """The purchases of ``as_of`` that today's statuses do not show: deals won then that have left their
    won stage since (reopened, or lost), and orders paid then and refunded or cancelled since (an order's
    deal leaves its won stage when it is). The stays covering ``as_of`` say so
    (``ix_deal_stage_changes_left``: the stays left since ``as_of``), each deal then read by key and its
    order probed on ``ix_orders_deal``. A deal's purchase is when its won stay began, an order's is when it
    was placed, as for the others. A deal won today and closed by ``as_of``, or a paid order, is among the
    other purchases already."""
    h = sql.table("deal_stage_changes")
    s = sql.table("pipeline_stages")
    d = sql.table("deals").alias("since")
    o = sql.table("orders")
    alone = o.c.deal_id.is_(None)  # no order behind the deal
    placed = func.coalesce(o.c.placed_at, o.c.created_at)
    deal_then = [
        alone,
        d.c.contact_id.is_not(None),
        or_(d.c.status != "won", d.c.closed_at.is_(None), d.c.closed_at > as_of),
    ]
    if not include_archived:
        deal_then += [
            or_(d.c.archived_at.is_(None), d.c.archived_at > as_of),
            d.c.id.not_in(restored_since("deal", ws, as_of)),
        ]
    order_then = and_(o.c.status != "paid", o.c.status != "fulfilled", placed <= as_of)
    return (
        select(
            case((alone, d.c.contact_id), else_=o.c.contact_id).label("contact_id"),
            case((alone, h.c.changed_at), else_=placed).label("at"),
            case((alone, d.c.currency), else_=o.c.currency).label("currency"),
            case((alone, d.c.amount), else_=o.c.total).label("amount"),
        )
        .select_from(
            h.join(s, and_(s.c.workspace_id == ws, s.c.id == h.c.to_stage_id))
            .join(d, and_(d.c.workspace_id == ws, d.c.id == h.c.deal_id))
            .outerjoin(o, and_(o.c.workspace_id == ws, o.c.deal_id == d.c.id))
        )
        .where(
            h.c.workspace_id == ws,
            h.c.left_at > as_of,
            h.c.changed_at <= as_of,
            s.c.kind == "won",
            or_(and_(*deal_then), order_then),
        )
    )


def _purchases(include_archived: bool, then: bool = False) -> CTE:
    o = sql.table("orders")
    d = sql.table("deals")
    ws, as_of = sql.param("ws"), sql.param("as_of", DateTime(timezone=True))
    at = func.coalesce(o.c.placed_at, o.c.created_at)
    paid = select(o.c.contact_id, at.label("at"), o.c.currency, o.c.total.label("amount")).where(
        o.c.workspace_id == ws, or_(o.c.status == "paid", o.c.status == "fulfilled"), at <= as_of
    )
    ordered = sql.table("orders").alias("ordered")
    # a won deal an order stands behind is that order's purchase: an anti-join the planner makes one hash
    # of the orders' deals for (shared by its parallel workers), where a NOT IN's hashed subplan was built
    # by each worker
    won = select(d.c.contact_id, d.c.closed_at.label("at"), d.c.currency, d.c.amount).where(
        d.c.workspace_id == ws,
        d.c.closed_at <= as_of,
        d.c.status == "won",
        d.c.contact_id.is_not(None),
        ~exists().where(ordered.c.workspace_id == ws, ordered.c.deal_id == d.c.id),
    )
    if not include_archived:
        # live at as_of: a deal archived since was live then (with as_of now, the same as IS NULL)
        won = won.where(or_(d.c.archived_at.is_(None), d.c.archived_at > as_of))
        if then:  # and one archived then and restored since was not
            won = won.where(d.c.id.not_in(restored_since("deal", ws, as_of)))
    if then:  # a past as_of: the deals won then and not now too (none has left a stage after now)
        return union_all(paid, won, _left_won(ws, as_of, include_archived)).cte("purchases")
    return union_all(paid, won).cte("purchases")


def _customers(purchases: CTE, include_archived: bool, then: bool = False) -> CTE:
    """One row per customer: purchases, the first and the last, and the value in the currency asked."""
    c = sql.table("contacts")
    p = purchases
    stmt = select(
        p.c.contact_id,
        func.count().label("purchases"),
        func.min(p.c.at).label("first_at"),
        func.max(p.c.at).label("last_at"),
        func.sum(p.c.amount).filter(p.c.currency == sql.param("currency", Text)).label("value"),
    ).group_by(p.c.contact_id)
    if not include_archived:
        # archived contacts (merged ones too) are few: an anti-join on their partial index, where a join
        # would probe every customer's row; only those archived by as_of (one archived since was live then)
        gone = and_(
            c.c.workspace_id == sql.param("ws"),
            c.c.id == p.c.contact_id,
            c.c.archived_at.is_not(None),
            c.c.archived_at <= sql.param("as_of", DateTime(timezone=True)),
        )
        stmt = stmt.where(~exists().where(gone))
        if then:  # and those archived then and restored since
            as_of = sql.param("as_of", DateTime(timezone=True))
            stmt = stmt.where(p.c.contact_id.not_in(restored_since("contact", sql.param("ws"), as_of)))
    return stmt.cte("customers")


def _month_of() -> Any:
    """The cohorts' months (``months``, first days) as an array to subscript by a ``width_bucket`` over
    ``bounds``: ``($n::date[])[i]`` (a cast is subscripted in brackets)."""
    return type_coerce(Grouping(sql.param("months", _DAYS)), _DAYS)


def _summary(k: CTE) -> Subquery:
    """The summary's one row over the customers ``k`` (a CTE with ``value``, ``purchases``, ``last_at``)."""
    value = cast(k.c.value, Float)  # percentile_cont takes floats; rounded to cents after
    return select(
        func.count().label("customers"),
        func.count(k.c.value).label("valued"),
        func.avg(k.c.value).label("mean"),
        func.percentile_cont(0.5).within_group(value).label("median"),
        func.percentile_cont(0.9).within_group(value).label("p90"),
        func.count().filter(k.c.purchases >= 2).label("repeat"),
        func.count()
        .filter(k.c.last_at < sql.param("churn_before", DateTime(timezone=True)))
        .label("churned"),
    ).subquery("summary")


@sql.shape
def _report(include_archived: bool, then: bool = False) -> Select[Any]:
    """One statement, so the purchases and the customers are read once (CTEs referenced twice are
    computed once): the summary's row, with the cohorts beside it as three arrays (the cohort's month,
    the month bought in, the customers active then), from ``cohorts_from`` on. ``then``: a past ``as_of``
    (the deals won then that have left their won stage since are purchases too)."""
    p = _purchases(include_archived, then)
    k = _customers(p, include_archived, then)
    summary = _summary(k)
    listed = _cohorts(p, k)
    return select(summary, listed).select_from(summary.join(listed, true()))


def _live(table: Any, ws: Any) -> ColumnElement[bool]:
    """``table``'s contact is not archived: an anti-join on the archived contacts' partial index."""
    c = sql.table("contacts")
    gone = and_(c.c.workspace_id == ws, c.c.id == table.c.contact_id, c.c.archived_at.is_not(None))
    return ~exists().where(gone)


def _place(fraction: str, valued: Any) -> ColumnElement[Any]:
    """Where ``percentile_cont(fraction)`` falls among ``valued.valued`` values, as PostgreSQL computes
    it: ``fraction * (n - 1)``, in floats."""
    return cast(literal_column(fraction), Float) * cast(valued.c.valued - 1, Float)


def _pair(fraction: str, valued: CTE, name: str) -> Subquery:
    """The values at ``floor`` of the place (``_place``) and the next, as floats in an array, ascending: read
    in the order of ``ix_contact_purchase_values_value`` up to the place, no sort of every value; from the
    top for a place past the middle (``OFFSET n - 2 - floor``: the next, then that at the place). The next is
    missing only when the place is the last row (one value): then the place is whole, and only it is read.
    """
    v = sql.table("contact_purchase_values")
    ws = sql.param("ws")
    floor = func.floor(_place(fraction, valued))
    top = float(fraction) > 0.5
    skip = cast(valued.c.valued, Float) - 2 - floor if top else floor
    place = select(cast(func.greatest(skip, 0), BigInteger)).scalar_subquery()
    c = sql.table("contacts")
    # archived contacts as one hashed set (NOT IN is safe: ids are never null), probed per entry in the
    # index's order, where the anti-join rescanned their index per entry
    gone = select(c.c.id).where(c.c.workspace_id == ws, c.c.archived_at.is_not(None))
    two = (
        select(cast(v.c.value, Float).label("value"))
        .where(
            v.c.workspace_id == ws, v.c.currency == sql.param("currency", Text), v.c.contact_id.not_in(gone)
        )
        .order_by(v.c.value.desc() if top else v.c.value)
        .offset(place)
        .limit(2)
        .subquery(f"{name}_two")
    )
    return select(func.array_agg(aggregate_order_by(two.c.value, two.c.value)).label("pair")).subquery(name)


def _percentile(fraction: str, valued: CTE, pair: Subquery) -> ColumnElement[Any]:
    """``percentile_cont(fraction)`` of the live customers' values in the currency asked, as PostgreSQL
    computes it: the values at ``floor`` and ``ceil`` of the place, interpolated. Null when none has a
    value (no pair)."""
    at = _place(fraction, valued)
    lower, upper = pair.c.pair[1], pair.c.pair[2]
    return case((at == func.floor(at), lower), else_=lower + (upper - lower) * (at - func.floor(at)))


def _kept_summary(kept: Any) -> Subquery:
    """The summary's row from the kept rows: the customers, repeat and churned counted over
    ``contact_purchases`` (no value parsed), the value's count, mean and percentiles from
    ``contact_purchase_values`` (one index range for the first two, one per percentile)."""
    v = sql.table("contact_purchase_values")
    ws = sql.param("ws")
    counts = (
        select(
            func.count().label("customers"),
            func.count().filter(kept.c.purchases >= 2).label("repeat"),
            func.count()
            .filter(kept.c.last_at < sql.param("churn_before", DateTime(timezone=True)))
            .label("churned"),
        )
        .where(kept.c.workspace_id == ws, _live(kept, ws))
        .subquery("counts")
    )
    valued = (
        select(func.count().label("valued"), func.avg(v.c.value).label("mean"))
        .where(v.c.workspace_id == ws, v.c.currency == sql.param("currency", Text), _live(v, ws))
        .cte("valued")
    )
    median, p90 = _pair("0.5", valued, "median"), _pair("0.9", valued, "p90")
    return (
        select(
            counts.c.customers,
            valued.c.valued,
            valued.c.mean,
            _percentile("0.5", valued, median).label("median"),
            _percentile("0.9", valued, p90).label("p90"),
            counts.c.repeat,
            counts.c.churned,
        )
        .select_from(
            counts.join(valued, true()).join(median, true()).join(p90, true()),
        )
        .subquery("summary")
    )


def _kept_cohorts(kept: Any) -> Subquery:
    """The cohorts from the cohort customers' rows alone: each one's purchases (``purchase_times``) are all
    since its first, so since ``cohorts_from``; their months in the zone asked, counted once per customer.

    The months come as UTC ranges (``month_from``/``month_to``, and ``bounds``: the starts and the end),
    worked out by the caller in the zone asked: a purchase's month is a range lookup (``width_bucket``), not
    a time zone conversion per row. Every cohort customer bought in its cohort's month (its first purchase):
    that cell is a count of the cohort's rows, one index-only range of ``ix_contact_purchases_first`` per
    month. Only a customer whose last purchase is past its cohort's month bought in any other month, and
    only those customers' times are unnested for the other cells (a function scan per row costs more than
    the row's read)."""
    ws = sql.param("ws")
    months = sql.param("months", _DAYS)
    bounds = sql.param("bounds", _STAMPS)
    month_of = _month_of()
    ranges = (
        func.unnest(months, sql.param("month_from", _STAMPS), sql.param("month_to", _STAMPS))
        .table_valued("month", "lower", "upper")
        .render_derived(name="r")
    )
    # a count per month, lateral: each is its own index range (a join of the ranges is planned as a scan
    # of every customer against each range)
    size = (
        select(func.count().label("active"))
        .where(
            kept.c.workspace_id == ws,
            kept.c.first_at >= ranges.c.lower,
            kept.c.first_at < ranges.c.upper,
            _live(kept, ws),
        )
        .lateral("size")
    )
    first = (
        select(ranges.c.month.label("cohort"), ranges.c.month, size.c.active)
        .select_from(ranges.join(size, true()))
        .where(size.c.active > 0)
    )
    at = func.unnest(kept.c.purchase_times).column_valued("at")
    cohort, bought = func.width_bucket(kept.c.first_at, bounds), func.width_bucket(at, bounds)
    later = (
        select(
            month_of[cohort].label("cohort"),
            month_of[bought].label("month"),
            func.count(kept.c.contact_id.distinct()).label("active"),
        )
        .where(
            kept.c.workspace_id == ws,
            kept.c.first_at >= sql.param("cohorts_from", DateTime(timezone=True)),
            _live(kept, ws),
            func.width_bucket(kept.c.last_at, bounds) != cohort,
            bought != cohort,
        )
        .group_by(cohort, bought)
    )
    return _listed(union_all(first, later).subquery("cohorts"))


def _listed(cohorts: Subquery) -> Subquery:
    """The cells (``cohort``, ``month``, ``active``) as three parallel arrays in one row, by cohort then
    month: both paths list them alike."""
    ordered = (cohorts.c.cohort, cohorts.c.month)
    return select(
        func.array_agg(aggregate_order_by(cohorts.c.cohort, *ordered)).label("cohorts"),
        func.array_agg(aggregate_order_by(cohorts.c.month, *ordered)).label("months"),
        func.array_agg(aggregate_order_by(cohorts.c.active, *ordered)).label("active"),
    ).subquery("listed")


@sql.shape
def _kept(then: bool = False) -> Select[Any]:
    """The report from the purchases kept per contact (``contact_purchases``, migrations 0037 and 0043), for
    live records only (archived contacts anti-joined, as above): the summary from the customers' rows and
    their values' rows (``_kept_summary``), the cohorts from the cohort customers' purchase times
    (``_kept_cohorts``). ``late`` says whether a kept purchase is after ``as_of``
    (``ix_contact_purchases_last``): then this answer is not the one asked, and the caller reads the
    purchases themselves. One statement, so the check and the answer see one snapshot.

    ``then``: ``as_of`` was asked (not now). The kept rows know only today's live records and today's
    purchases, so ``late`` is also true when a contact or a won deal was archived after ``as_of`` (it was
    live then), one archived then was restored since, or a won stay covering ``as_of`` was left since (a
    deal reopened or lost, an order refunded or cancelled: a purchase then). Without
    ``then`` (as_of now) nothing was archived after it, and the statement is the default query's,
    unchanged."""
    kept = sql.table("contact_purchases")
    ws = sql.param("ws")
    summary = _kept_summary(kept)
    listed = _kept_cohorts(kept.alias("buyers"))
    as_of = sql.param("as_of", DateTime(timezone=True))
    late: ColumnElement[bool] = exists().where(kept.c.workspace_id == ws, kept.c.last_at > as_of)
    if then:
        d = sql.table("deals")
        since = sql.table("contacts").alias("since")
        h, st = sql.table("deal_stage_changes"), sql.table("pipeline_stages")
        late = or_(
            late,
            # archived contacts, on their partial index
            exists().where(
                since.c.workspace_id == ws, since.c.archived_at.is_not(None), since.c.archived_at > as_of
            ),
            # won deals archived since, on their partial index (those closed after as_of too: the
            # purchases then answer, as right and slower; a bound on closed_at would steer the planner
            # to every closed deal on ix_deals_report_closed)
            exists().where(
                d.c.workspace_id == ws,
                d.c.archived_at.is_not(None),
                d.c.archived_at > as_of,
                d.c.status == "won",
            ),
            # a contact or a deal archived then and restored since (it is live in the kept rows)
            exists(restored_since("contact", ws, as_of)),
            exists(restored_since("deal", ws, as_of)),
            # a won stay left since (a deal reopened or lost after it was won by as_of), on
            # ix_deal_stage_changes_left; the kept rows know only today's won deals
            exists().where(
                h.c.workspace_id == ws,
                h.c.left_at > as_of,
                h.c.changed_at <= as_of,
                h.c.to_stage_id.in_(select(st.c.id).where(st.c.workspace_id == ws, st.c.kind == "won")),
            ),
        )
    return select(summary, listed, late.label("late")).select_from(summary.join(listed, true()))


def cohort_window(as_of: dt.datetime, tz: str) -> dict[str, Any]:
    """The cohorts' 12 months up to ``as_of``'s (in ``tz``; first days, oldest first) and the same as UTC
    ranges: local midnight of each first day up to the next one's (``bounds``: the starts and the last
    end; ``cohorts_from``: the first start). ValueError or OverflowError at the calendar's ends."""
    zone = zoneinfo.ZoneInfo(tz)
    months = params.months_back(as_of.astimezone(zone).date(), 12)
    after = params.next_start(months[-1], "month")
    bounds = [dt.datetime.combine(m, dt.time(), zone).astimezone(dt.UTC) for m in [*months, after]]
    return {
        "months": months,
        "cohorts_from": bounds[0],
        "month_from": bounds[:-1],
        "month_to": bounds[1:],
        "bounds": bounds,
    }


async def customers(
    conn: asyncpg.Pool | asyncpg.Connection,
    ws: uuid.UUID,
    include_archived: bool,
    values: dict[str, Any],
    then: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The summary, and the cohorts' rows: ``(cohort, month, active)``. ``then``: ``as_of`` was asked
    (see ``_kept``)."""
    asked = {k: values[k] for k in ("as_of", "currency", "churn_before", "tz", "cohorts_from")}
    ranges = {k: values[k] for k in ("months", "month_from", "month_to", "bounds")}
    row: dict[str, Any] = {"late": True}
    if not include_archived:
        row = dict((await roomy.fetch(conn, _kept(then), ws=ws, **asked, **ranges))[0])
    if row.pop("late"):  # archived records asked, a purchase or an archival after as_of: the purchases
        row = dict((await roomy.fetch(conn, _report(include_archived, then), ws=ws, **asked, **ranges))[0])
    listed = zip(row.pop("cohorts") or (), row.pop("months") or (), row.pop("active") or (), strict=True)
    return row, [{"cohort": c, "month": m, "active": n} for c, m, n in listed]


def _cohorts(p: Any, k: Any) -> Any:
    """Per month of first purchase (``k.first_at``), the customers of the cohort who bought (``p.at``) in
    each month since, as three parallel arrays in one row, by cohort then month, as the kept path gives
    them. Months are ranges (``bounds``, see ``_kept_cohorts``); a cohort customer's purchases are all since
    ``cohorts_from``, so only those purchases meet the customers."""
    bounds, month_of = sql.param("bounds", _STAMPS), _month_of()
    cohorts_from = sql.param("cohorts_from", DateTime(timezone=True))
    cohort, bought = func.width_bucket(k.c.first_at, bounds), func.width_bucket(p.c.at, bounds)
    cohorts = (
        select(
            month_of[cohort].label("cohort"),
            month_of[bought].label("month"),
            func.count(p.c.contact_id.distinct()).label("active"),
        )
        .select_from(p.join(k, k.c.contact_id == p.c.contact_id))
        .where(k.c.first_at >= cohorts_from, p.c.at >= cohorts_from)
        .group_by(cohort, bought)
        .subquery("cohorts")
    )
    return _listed(cohorts)
