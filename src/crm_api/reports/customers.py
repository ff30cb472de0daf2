"""The customers report's SQL: who bought, for how much, whether they came back, who stopped.

A purchase is a paid or fulfilled order (at ``placed_at``, else when it was first pushed), or a won deal
that no order stands behind (at ``closed_at``): an order is also a won deal, and counting both would count
it twice. A customer is a contact live at ``as_of`` with at least one purchase by then: like the pipeline's
``as_of``, a contact or a won deal archived after ``as_of`` (merged ones too: a merge archives them) was
live then and counts, one archived by then does not. Two statements share the purchases: the summary
(lifetime value in one currency, repeat and churn) and the monthly cohorts.

Purchases are read per workspace from ``ix_orders_report_paid`` (partial on paid and fulfilled orders) and
``ix_deals_report_closed``, both carrying what is read; the deals orders stand behind from ``ix_orders_deal``
(one set); archived contacts on their partial index.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from sqlalchemy import (
    ColumnElement,
    Date,
    DateTime,
    Float,
    Numeric,
    Select,
    Text,
    and_,
    cast,
    exists,
    func,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.sql.selectable import CTE, Subquery

from .. import sql
from . import roomy


def _purchases(include_archived: bool) -> CTE:
    o = sql.table("orders")
    d = sql.table("deals")
    ws, as_of = sql.param("ws"), sql.param("as_of", DateTime(timezone=True))
    at = func.coalesce(o.c.placed_at, o.c.created_at)
    paid = select(o.c.contact_id, at.label("at"), o.c.currency, o.c.total.label("amount")).where(
        o.c.workspace_id == ws, or_(o.c.status == "paid", o.c.status == "fulfilled"), at <= as_of
    )
    ordered = sql.table("orders").alias("ordered")
    # the deals orders stand behind, as one set (a hashed subplan over ix_orders_deal, read once), not a
    # probe per won deal: NOT IN is safe here, the set holds no null
    behind = select(ordered.c.deal_id).where(ordered.c.workspace_id == ws, ordered.c.deal_id.is_not(None))
    won = select(d.c.contact_id, d.c.closed_at.label("at"), d.c.currency, d.c.amount).where(
        d.c.workspace_id == ws,
        d.c.closed_at <= as_of,
        d.c.status == "won",
        d.c.contact_id.is_not(None),
        d.c.id.not_in(behind),
    )
    if not include_archived:
        # live at as_of: a deal archived since was live then (with as_of now, the same as IS NULL)
        won = won.where(or_(d.c.archived_at.is_(None), d.c.archived_at > as_of))
    return union_all(paid, won).cte("purchases")


def _customers(purchases: CTE, include_archived: bool) -> CTE:
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
    return stmt.cte("customers")


def _month(column: Any) -> Any:
    return cast(func.date_trunc("month", func.timezone(sql.param("tz", Text), column)), Date)


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
def _report(include_archived: bool) -> Select[Any]:
    """One statement, so the purchases and the customers are read once (CTEs referenced twice are
    computed once): the summary's row, with the cohorts beside it as three arrays (the cohort's month,
    the month bought in, the customers active then), from ``cohorts_from`` on."""
    p = _purchases(include_archived)
    k = _customers(p, include_archived)
    summary = _summary(k)
    listed = _cohorts(p, k)
    return select(summary, listed).select_from(summary.join(listed, true()))


def _recent(kept: Any) -> CTE:
    """The purchases since ``cohorts_from`` (by ``as_of``) the cohorts count: the paid orders of the period
    (two index-only ranges of ``ix_orders_report_paid``), and the won deals of the customers who have any
    among their purchases (``ix_contact_purchases_deals``, then each one's deals on ``ix_deals_contact``),
    not every won deal."""
    o = sql.table("orders")
    d = sql.table("deals")
    ordered = sql.table("orders").alias("ordered")
    ws, as_of = sql.param("ws"), sql.param("as_of", DateTime(timezone=True))
    cohorts_from = sql.param("cohorts_from", DateTime(timezone=True))
    # coalesce(placed_at, created_at) in the period, as two ranges of ix_orders_report_paid (by placed_at,
    # created_at carried): the orders placed in it, and those with no placed_at created in it; a range
    # of the index read alone, where the coalesce's range was a filter over every paid order
    paying = (o.c.workspace_id == ws, or_(o.c.status == "paid", o.c.status == "fulfilled"))
    placed = select(o.c.contact_id, o.c.placed_at.label("at")).where(
        *paying, o.c.placed_at <= as_of, o.c.placed_at >= cohorts_from
    )
    unplaced = select(o.c.contact_id, o.c.created_at.label("at")).where(
        *paying, o.c.placed_at.is_(None), o.c.created_at <= as_of, o.c.created_at >= cohorts_from
    )
    buyers = kept.alias("buyers")
    # each such customer's deals on ix_deals_contact, a few probes per customer: a lateral subquery kept
    # apart (OFFSET 0), where a join was planned as a scan of every deal hashed against the customers
    bought = (
        select(d.c.closed_at.label("at"))
        .where(
            d.c.workspace_id == buyers.c.workspace_id,
            d.c.contact_id == buyers.c.contact_id,
            d.c.status == "won",
            d.c.closed_at <= as_of,
            d.c.closed_at >= cohorts_from,
            d.c.archived_at.is_(None),
            ~exists().where(ordered.c.workspace_id == d.c.workspace_id, ordered.c.deal_id == d.c.id),
        )
        .offset(0)
        .lateral("bought")
    )
    won = (
        select(buyers.c.contact_id, bought.c.at)
        .select_from(buyers.join(bought, true()))
        .where(
            buyers.c.workspace_id == ws,
            buyers.c.deal_purchases > 0,
            buyers.c.first_at >= cohorts_from,
        )
    )
    return union_all(placed, unplaced, won).cte("purchases")


@sql.shape
def _kept(then: bool = False) -> Select[Any]:
    """The report from the purchases kept per contact (``contact_purchases``, migration 0037), for live
    records only: the summary is one pass over the customers' rows (archived contacts anti-joined, as
    above), and the cohorts read only the purchases since ``cohorts_from`` (their months), joined with the
    customers whose first purchase is since then. ``late`` says whether a kept purchase is after
    ``as_of`` (``ix_contact_purchases_last``): then this answer is not the one asked, and the caller
    reads the purchases themselves. One statement, so the check and the answer see one snapshot.

    ``then``: ``as_of`` was asked (not now). The kept rows know only today's live records, so ``late``
    is also true when a contact or a won deal was archived after ``as_of`` (it was live then). Without
    ``then`` (as_of now) nothing was archived after it, and the statement is the default query's,
    unchanged."""
    c = sql.table("contacts")
    kept = sql.table("contact_purchases")
    ws = sql.param("ws")
    gone = and_(c.c.workspace_id == ws, c.c.id == kept.c.contact_id, c.c.archived_at.is_not(None))
    rows = select(
        kept.c.contact_id,
        kept.c.purchases,
        kept.c.first_at,
        kept.c.last_at,
        cast(kept.c.value[sql.param("currency", Text)].astext, Numeric).label("value"),
    ).where(kept.c.workspace_id == ws, ~exists().where(gone))
    summary = _summary(rows.cte("customers"))
    p = _recent(kept)
    # the cohorts join the same rows read from the table, not from the CTE: planned with the table's
    # statistics (contact_id unique), the period's purchases are hashed against the cohorts' customers,
    # where the CTE's unknown join selectivity chose to sort every purchase of the period for a merge join
    listed = _cohorts(p, rows.subquery("firsts"))
    as_of = sql.param("as_of", DateTime(timezone=True))
    late: ColumnElement[bool] = exists().where(kept.c.workspace_id == ws, kept.c.last_at > as_of)
    if then:
        d = sql.table("deals")
        since = sql.table("contacts").alias("since")
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
        )
    return select(summary, listed, late.label("late")).select_from(summary.join(listed, true()))


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
    row: dict[str, Any] = {"late": True}
    if not include_archived:
        row = dict((await roomy.fetch(conn, _kept(then), ws=ws, **asked))[0])
    if row.pop("late"):  # archived records asked, a purchase or an archival after as_of: the purchases
        row = dict((await roomy.fetch(conn, _report(include_archived), ws=ws, **asked))[0])
    listed = zip(row.pop("cohorts") or (), row.pop("months") or (), row.pop("active") or (), strict=True)
    return row, [{"cohort": c, "month": m, "active": n} for c, m, n in listed]


def _cohorts(p: Any, k: Any) -> Any:
    """Per month of first purchase (``k.first_at``), the customers of the cohort who bought (``p.at``) in
    each month since, as three parallel arrays in one row: what the summary and the kept path share."""
    cohort, bought = _month(k.c.first_at), _month(p.c.at)
    cohorts = (
        select(
            cohort.label("cohort"),
            bought.label("month"),
            func.count(p.c.contact_id.distinct()).label("active"),
        )
        .select_from(p.join(k, k.c.contact_id == p.c.contact_id))
        .where(k.c.first_at >= sql.param("cohorts_from", DateTime(timezone=True)))
        .group_by(cohort, bought)
        .subquery("cohorts")
    )
    return select(
        func.array_agg(cohorts.c.cohort).label("cohorts"),
        func.array_agg(cohorts.c.month).label("months"),
        func.array_agg(cohorts.c.active).label("active"),
    ).subquery("listed")
