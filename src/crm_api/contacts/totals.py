"""A contact's totals, derived from other records: its lifetime value (its won, live deals summed per
currency) and its order count. Deal writes (``deals.spec``'s after_write), orders and merges refresh them;
each changed contact gets a new version and its ``contact.updated`` event."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import Select, Text, any_, cast, func, select, true
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from .. import sql
from ..auth import Context
from ..resources import writes
from .spec import CONTACTS


def _aggregates() -> Select[Any]:
    """Every named contact, locked, beside its aggregates computed afresh: won, live deals it is the primary
    contact of, summed per currency, and the orders that name it. Set-based, so a batch's contacts cost the
    same one statement as one contact's."""
    c = sql.table("contacts").alias("c")
    d = sql.table("deals").alias("d")
    o = sql.table("orders").alias("o")
    won = (
        select(d.c.currency, func.sum(d.c.amount).label("total"))
        .where(
            d.c.workspace_id == c.c.workspace_id,
            d.c.contact_id == c.c.id,
            d.c.status == sql.const("won"),
            d.c.archived_at.is_(None),
            d.c.amount.is_not(None),
            d.c.currency.is_not(None),
        )
        .group_by(d.c.currency)
        # a FROM subquery is not correlated by itself: c is the lateral's outer row
        .correlate(c)
        .subquery("s")
    )
    ltv = select(func.jsonb_object_agg(won.c.currency, cast(won.c.total, Text)).label("ltv")).lateral("v")
    orders = (
        select(func.count().label("orders"))
        .where(o.c.workspace_id == c.c.workspace_id, o.c.contact_id == c.c.id)
        .lateral("n")
    )
    return (
        select(
            *sql.columns(CONTACTS.columns, c),
            func.coalesce(ltv.c.ltv, cast(sql.const("{}"), JSONB)).label("new_lifetime_value"),
            func.coalesce(orders.c.orders, sql.const(0)).label("new_order_count"),
        )
        .select_from(c.outerjoin(ltv, true()).outerjoin(orders, true()))
        .where(c.c.workspace_id == sql.param("ws"), c.c.id == any_(sql.param("ids", ARRAY(UUID))))
        .order_by(c.c.id)
        .with_for_update(of=c)
    )


_AGGREGATES = sql.Query(_aggregates)


async def contact_aggregates(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> list[dict[str, Any]]:
    rows = await _AGGREGATES.fetch(conn, ws=workspace_id, ids=sorted(set(ids)))
    return [dict(r) for r in rows]


async def refresh_contacts(conn: asyncpg.Connection, ctx: Context, ids: set[uuid.UUID]) -> None:
    """Recompute lifetime value and order count of the contacts, and write those that changed as one
    batch through the write pipeline, so each gets its ``contact.updated`` event and a new version.

    Upkeep of derived, read-only columns: the client rules are not run (``rules=False``), so an erased or
    merged contact's aggregates still follow its deals."""
    rows = await contact_aggregates(conn, ctx.workspace_id, list(ids))
    changes = []
    for row in rows:
        ltv, count = row.pop("new_lifetime_value"), row.pop("new_order_count")
        changes.append((row, {"lifetime_value": ltv, "order_count": count}))
    await writes.apply(conn, CONTACTS, ctx, changes, "updated", rules=False)
