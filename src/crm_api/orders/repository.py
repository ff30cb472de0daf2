"""SQL of orders: the stored order, its deal's line items and the pipeline stages an order maps to. Each
is one statement, whatever the number of rows."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    column,
    delete,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert
from sqlalchemy.sql.dml import ReturningInsert, Update

from .. import jsonutil, sql
from ..ids import uuid7

_ORDER_FIELDS = (
    "source",
    "external_id",
    "deal_id",
    "contact_id",
    "company_id",
    "order_number",
    "status",
    "currency",
    "subtotal",
    "discount",
    "tax",
    "shipping",
    "total",
    "placed_at",
    "shop_updated_at",
    "body_hash",
    "created_at",
    "updated_at",
)
# what a newer version of the order replaces (the key and created_at stay)
_ORDER_REPLACED = tuple(c for c in _ORDER_FIELDS if c not in ("source", "external_id", "created_at"))
_LINE_FIELDS = (
    "id",
    "deal_id",
    "position",
    "sku",
    "name",
    "quantity",
    "unit_price",
    "discount",
    "tax",
    "created_at",
)
# a line item as the service sends it (the deal, the workspace and the time are the statement's)
_LINE_GIVEN = ("id", "position", "sku", "name", "quantity", "unit_price", "discount", "tax")

# PostgreSQL's tell for an upsert's row: a system column, in no model, 0 on a freshly inserted row version.
# A reviewed fragment.
_XMAX: ColumnElement[Any] = literal_column("xmax", Integer)

# ``NULL::orders``: the table's row type, which SQLAlchemy cannot name. A reviewed fragment.
_ORDER_ROW_TYPE: ColumnElement[Any] = literal_column("NULL::orders")


def _order_key() -> list[ColumnElement[bool]]:
    o = sql.table("orders")
    return [
        o.c.workspace_id == sql.param("ws"),
        o.c.source == sql.param("source"),
        o.c.external_id == sql.param("external_id"),
    ]


def _fetch_order() -> Select[Any]:
    o = sql.table("orders")
    return select(*sql.columns(_ORDER_FIELDS, o)).where(*_order_key())


def _touch_clock() -> Update:
    o = sql.table("orders")
    clock = sql.param("clock", o.c.shop_updated_at.type)
    return update(o).values(shop_updated_at=clock).where(*_order_key(), o.c.shop_updated_at < clock)


def _save_order() -> ReturningInsert[Any]:
    """Insert the order (one jsonb parameter read as an ``orders`` row), or replace the stored one."""
    o = sql.table("orders")
    given = (
        func.jsonb_populate_record(_ORDER_ROW_TYPE, sql.param("order", JSONB))
        .table_valued(*(column(c.name, c.type) for c in o.columns))
        .alias("given")
    )
    stmt = insert(o).from_select(
        ["workspace_id", *_ORDER_FIELDS],
        select(sql.param("ws", o.c.workspace_id.type), *sql.columns(_ORDER_FIELDS, given)),
    )
    return stmt.on_conflict_do_update(
        index_elements=[o.c.workspace_id, o.c.source, o.c.external_id],
        set_={c: stmt.excluded[c] for c in _ORDER_REPLACED},
    ).returning((_XMAX == 0).label("inserted"), *sql.columns(_ORDER_FIELDS, o))


def _replace_line_items() -> ReturningInsert[Any]:
    """A CTE deletes the deal's line items; the insert adds the new ones (fresh ids: no collision)."""
    li = sql.table("deal_line_items")
    ws = sql.param("ws", li.c.workspace_id.type)
    deal_id = sql.param("deal_id", li.c.deal_id.type)
    gone = delete(li).where(li.c.workspace_id == ws, li.c.deal_id == deal_id).cte("gone")
    items = (
        func.jsonb_to_recordset(sql.param("items", JSONB))
        .table_valued(*(column(n, li.c[n].type) for n in _LINE_GIVEN))
        .render_derived(name="r", with_types=True)
    )
    values = {n: items.c[n] for n in _LINE_GIVEN}
    values |= {"deal_id": deal_id, "created_at": sql.param("at", li.c.created_at.type)}
    return (
        insert(li)
        .from_select(["workspace_id", *_LINE_FIELDS], select(ws, *(values[n] for n in _LINE_FIELDS)))
        .returning(*sql.columns(_LINE_FIELDS, li))
        .add_cte(gone)
    )


def _line_items() -> Select[Any]:
    li = sql.table("deal_line_items")
    after_position = sql.param("after_position", Integer)
    return (
        select(*sql.columns(_LINE_FIELDS, li))
        .where(
            li.c.workspace_id == sql.param("ws"),
            li.c.deal_id == sql.param("deal_id"),
            or_(
                after_position.is_(None),
                tuple_(li.c.position, li.c.id) > tuple_(after_position, sql.param("after_id", UUID)),
            ),
        )
        .order_by(li.c.position, li.c.id)
        .limit(sql.param("limit"))
    )


def _stages() -> Select[Any]:
    """The stages of one pipeline (the named one, else the workspace default), in order."""
    s = sql.table("pipeline_stages").alias("s")
    p = sql.table("pipelines").alias("p")
    pipeline_id = sql.param("pipeline_id", UUID)
    return (
        select(s.c.id, s.c.pipeline_id, s.c.kind)
        .select_from(s.join(p, and_(p.c.workspace_id == s.c.workspace_id, p.c.id == s.c.pipeline_id)))
        .where(
            s.c.workspace_id == sql.param("ws"),
            or_(p.c.id == pipeline_id, and_(pipeline_id.is_(None), p.c.is_default)),
        )
        .order_by(s.c.position)
    )


_FETCH_ORDER = sql.Query(_fetch_order)
_TOUCH_CLOCK = sql.Query(_touch_clock)
_SAVE_ORDER = sql.Query(_save_order)
_REPLACE_LINE_ITEMS = sql.Query(_replace_line_items)
_LINE_ITEMS = sql.Query(_line_items)
_STAGES = sql.Query(_stages)


async def fetch_order(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, source: str, external_id: str
) -> dict[str, Any] | None:
    row = await _FETCH_ORDER.fetchrow(conn, ws=workspace_id, source=source, external_id=external_id)
    return dict(row) if row is not None else None


async def touch_clock(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, source: str, external_id: str, clock: dt.datetime
) -> None:
    """A newer version with the same content moves the clock only, so an older, different version that
    arrives later is still recognised as older."""
    await _TOUCH_CLOCK.execute(conn, ws=workspace_id, source=source, external_id=external_id, clock=clock)


async def save_order(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, order: dict[str, Any]
) -> tuple[bool, dict[str, Any]]:
    """Insert or replace the stored order; True when it is new."""
    row = await _SAVE_ORDER.fetchrow(conn, ws=workspace_id, order=jsonutil.dumps_str(order))
    out = dict(row)
    return bool(out.pop("inserted")), out


async def replace_line_items(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    deal_id: uuid.UUID,
    items: Sequence[dict[str, Any]],
    at: dt.datetime,
) -> list[dict[str, Any]]:
    """The deal's line items become ``items``, in one statement."""
    rows = [{"id": uuid7(), "position": n, **item} for n, item in enumerate(items)]
    result = await _REPLACE_LINE_ITEMS.fetch(
        conn, ws=workspace_id, deal_id=deal_id, items=jsonutil.dumps_str(rows), at=at
    )
    return sorted((dict(r) for r in result), key=lambda r: int(r["position"]))


async def line_items(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: uuid.UUID,
    deal_id: uuid.UUID,
    after: tuple[int, uuid.UUID] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """A deal's line items by position (keyset-paged when ``limit`` is given: ``limit + 1`` rows)."""
    rows = await _LINE_ITEMS.fetch(
        conn,
        ws=workspace_id,
        deal_id=deal_id,
        after_position=after[0] if after else None,
        after_id=after[1] if after else None,
        limit=limit + 1 if limit is not None else None,
    )
    return [dict(r) for r in rows]


async def stages(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, pipeline_id: uuid.UUID | None
) -> list[dict[str, Any]]:
    return [dict(r) for r in await _STAGES.fetch(conn, ws=workspace_id, pipeline_id=pipeline_id)]
