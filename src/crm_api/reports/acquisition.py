"""The acquisition reports' SQL: lead conversion (from the contacts' lifecycle history, which a trigger keeps
for good) and attribution (contacts by acquisition ``source``).

Lead conversion reads the facts triggers keep on each entry into lead (migration 0036) from one partial
index; ``lead_conversion_from_history`` is the computation it replaces (kept for the tests that compare):
it walks the entries into ``lead`` in the period on ``ix_contact_lifecycle_changes_stage``, then each
contact's later entry into ``customer`` on ``ix_contact_lifecycle_changes_contact``. Attribution
sums the roll-up of migration 0036 (``rollup.py``); ``attribution_from_tables`` is the computation it
replaces (kept for the tests that compare the two): the contacts created in the period from
``ix_contacts_created`` alone (it carries the id, source, lifecycle stage and archived_at),
hash-joined with the set of leads and the set of buyers. Both run through
``roomy`` (their hashes fit in memory).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from sqlalchemy import DateTime, Select, Text, and_, exists, func, literal, or_, select, true

from .. import sql
from . import leads, rollup, roomy
from .buckets import in_period, local_bucket


def _live(c: Any, include_archived: bool) -> Any:
    return true() if include_archived else c.c.archived_at.is_(None)  # merged contacts are archived too


@sql.shape
def _lead_conversion(by_source: bool, include_archived: bool) -> Select[Any]:
    """Per bucket (and source): contacts whose first entry into ``lead`` in the period falls in it, how
    many entered ``customer`` after that, and the median time it took.

    Both sides are ranges of ix_contact_lifecycle_changes_stage (entries into ``lead`` in the period,
    entries into ``customer`` since it began), matched by a hash join rather than a probe per lead.
    Archived contacts are few: an anti-join on their partial index; the contacts' rows are read only
    for their source."""
    h = sql.table("contact_lifecycle_changes")
    c = sql.table("contacts")
    ws = sql.param("ws")
    became = h.alias("became")
    first = (
        select(h.c.contact_id, func.min(h.c.changed_at).label("lead_at"))
        .where(h.c.workspace_id == ws, h.c.to_stage == "lead", in_period(h.c.changed_at))
        .group_by(h.c.contact_id)
        .cte("first")  # read twice below: a CTE is computed once
    )
    customer = (
        select(first.c.contact_id, func.min(became.c.changed_at).label("customer_at"))
        .select_from(first.join(became, became.c.contact_id == first.c.contact_id))
        .where(
            became.c.workspace_id == ws,
            became.c.to_stage == "customer",
            became.c.changed_at >= sql.param("lower", DateTime(timezone=True)),
            became.c.changed_at > first.c.lead_at,
        )
        .group_by(first.c.contact_id)
        .subquery("customer")
    )
    bucket = local_bucket(first.c.lead_at)
    took = customer.c.customer_at - first.c.lead_at
    joined = first.outerjoin(customer, customer.c.contact_id == first.c.contact_id)
    if by_source:
        joined = joined.join(c, and_(c.c.workspace_id == ws, c.c.id == first.c.contact_id))
    stmt = select(
        bucket.label("bucket"),
        (c.c.source if by_source else literal(None, Text)).label("grp"),
        func.count().label("leads"),
        func.count(customer.c.customer_at).label("converted"),
        func.percentile_cont(0.5).within_group(took).label("median"),
    ).select_from(joined)
    if not include_archived:
        gone = contacts_archived(first.c.contact_id)
        stmt = stmt.where(~exists().where(gone))
    return stmt.group_by(bucket, c.c.source) if by_source else stmt.group_by(bucket)


def contacts_archived(contact_id: Any) -> Any:
    """The contact is archived (or merged): for an anti-join on ``ix_contacts_archived``."""
    c = sql.table("contacts").alias("archived")
    return and_(c.c.workspace_id == sql.param("ws"), c.c.id == contact_id, c.c.archived_at.is_not(None))


@sql.shape
def _lead_conversion_kept(by_source: bool, include_archived: bool) -> Select[Any]:
    """The same answer from the facts kept on each entry into lead (migration 0036), one range of the
    partial index ``ix_contact_lifecycle_changes_leads`` that carries them all: an entry is its contact's
    first of the period when the previous one came before the period; ``converted_at`` is the contact's
    first entry into customer after it; ``source`` and ``archived`` are the contact's now."""
    h = sql.table("contact_lifecycle_changes")
    bucket = local_bucket(h.c.changed_at)
    stmt = select(
        bucket.label("bucket"),
        (h.c.source if by_source else literal(None, Text)).label("grp"),
        func.count().label("leads"),
        func.count(h.c.converted_at).label("converted"),
        func.percentile_cont(0.5).within_group(h.c.converted_at - h.c.changed_at).label("median"),
    ).where(
        h.c.workspace_id == sql.param("ws"),
        h.c.to_stage == sql.const("lead"),  # in the text: the partial index's predicate
        in_period(h.c.changed_at),
        or_(h.c.prior_lead_at.is_(None), h.c.prior_lead_at < sql.param("lower", DateTime(timezone=True))),
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
    """From the counts and facts the triggers keep (``leads.py``): the same answer as
    ``lead_conversion_from_history``."""
    return await leads.lead_conversion(conn, ws, by_source, include_archived, period)


async def lead_conversion_from_entries(
    conn: asyncpg.Pool | asyncpg.Connection,
    ws: uuid.UUID,
    by_source: bool,
    include_archived: bool,
    period: dict[str, Any],
) -> list[dict[str, Any]]:
    """Every entry into lead of the period with its kept facts, one pass over the partial index."""
    params = {k: period[k] for k in ("lower", "upper", "unit", "tz")}
    rows = await roomy.fetch(conn, _lead_conversion_kept(by_source, include_archived), ws=ws, **params)
    return [dict(r) for r in rows]


async def lead_conversion_from_history(
    conn: asyncpg.Pool | asyncpg.Connection,
    ws: uuid.UUID,
    by_source: bool,
    include_archived: bool,
    period: dict[str, Any],
) -> list[dict[str, Any]]:
    """Every entry of the period matched with the later entries into customer (what the kept facts must
    equal)."""
    params = {k: period[k] for k in ("lower", "upper", "unit", "tz")}
    rows = await roomy.fetch(conn, _lead_conversion(by_source, include_archived), ws=ws, **params)
    return [dict(r) for r in rows]


def _created_in_period(c: Any, include_archived: bool) -> list[Any]:
    return [c.c.workspace_id == sql.param("ws"), in_period(c.c.created_at), _live(c, include_archived)]


@sql.shape
def _attribution(include_archived: bool) -> Select[Any]:
    """Per source, the contacts created in the period, those that were ever leads (in the lifecycle history,
    or a lead now) and those that bought (a won deal, or a paid or fulfilled order).

    The leads and the buyers are each one set of contact ids (a range of an index each), hash-joined with
    the contacts created in the period: a probe per contact would be three per contact, millions at size."""
    c = sql.table("contacts")
    h = sql.table("contact_lifecycle_changes")
    d = sql.table("deals")
    o = sql.table("orders")
    ws = sql.param("ws")
    leads = (
        select(h.c.contact_id)
        .distinct()
        .where(h.c.workspace_id == ws, h.c.to_stage == "lead")
        .subquery("leads")
    )
    won = select(d.c.contact_id).where(
        d.c.workspace_id == ws, d.c.status == "won", d.c.archived_at.is_(None), d.c.contact_id.is_not(None)
    )
    paid = select(o.c.contact_id).where(
        o.c.workspace_id == ws, or_(o.c.status == "paid", o.c.status == "fulfilled")
    )
    buyers = won.union(paid).subquery("buyers")  # UNION: one row per contact
    joined = c.outerjoin(leads, leads.c.contact_id == c.c.id).outerjoin(buyers, buyers.c.contact_id == c.c.id)
    was_lead = or_(c.c.lifecycle_stage == "lead", leads.c.contact_id.is_not(None))
    return (
        select(
            c.c.source.label("grp"),
            func.count().label("contacts"),
            func.count().filter(was_lead).label("leads"),
            func.count(buyers.c.contact_id).label("customers"),
        )
        .select_from(joined)
        .where(*_created_in_period(c, include_archived))
        .group_by(c.c.source)
    )


@sql.shape
def _attribution_won(include_archived: bool) -> Select[Any]:
    """Per source and currency, the won deals of the contacts created in the period (primary contact)."""
    c = sql.table("contacts")
    d = sql.table("deals")
    return (
        select(c.c.source.label("grp"), d.c.currency, func.sum(d.c.amount).label("amount"))
        .select_from(c.join(d, and_(d.c.workspace_id == c.c.workspace_id, d.c.contact_id == c.c.id)))
        .where(*_created_in_period(c, include_archived), d.c.status == "won", d.c.archived_at.is_(None))
        .group_by(c.c.source, d.c.currency)
    )


async def attribution(
    conn: asyncpg.Pool | asyncpg.Connection, ws: uuid.UUID, include_archived: bool, period: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """From the roll-up the triggers keep (``rollup.py``): the same answer as ``attribution_from_tables``."""
    return await rollup.attribution(conn, ws, include_archived, period)


async def attribution_from_tables(
    conn: asyncpg.Pool | asyncpg.Connection, ws: uuid.UUID, include_archived: bool, period: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every contact created in the period, from the tables themselves (what the roll-up must equal)."""
    params = {"ws": ws, "lower": period["lower"], "upper": period["upper"]}
    counts = await roomy.fetch(conn, _attribution(include_archived), **params)
    won = await roomy.fetch(conn, _attribution_won(include_archived), **params)
    return [dict(r) for r in counts], [dict(r) for r in won]
