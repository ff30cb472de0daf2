"""SQL of orders: the stored order, its deal's line items and the pipeline stages an order maps to. Each
is one statement, whatever the number of rows."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from .. import jsonutil
from ..ids import uuid7

_ORDER_COLUMNS = (
    "source, external_id, deal_id, contact_id, company_id, order_number, status, currency, subtotal, "
    "discount, tax, shipping, total, placed_at, shop_updated_at, body_hash, created_at, updated_at"
)
_LINE_COLUMNS = "id, deal_id, position, sku, name, quantity, unit_price, discount, tax, created_at"


async def fetch_order(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, source: str, external_id: str
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {_ORDER_COLUMNS} FROM orders WHERE workspace_id = $1 AND source = $2 AND external_id = $3",
        workspace_id,
        source,
        external_id,
    )
    return dict(row) if row is not None else None


async def touch_clock(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, source: str, external_id: str, clock: dt.datetime
) -> None:
    """A newer version with the same content moves the clock only, so an older, different version that
    arrives later is still recognised as older."""
    await conn.execute(
        "UPDATE orders SET shop_updated_at = $4 "
        "WHERE workspace_id = $1 AND source = $2 AND external_id = $3 AND shop_updated_at < $4",
        workspace_id,
        source,
        external_id,
        clock,
    )


async def save_order(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, order: dict[str, Any]
) -> tuple[bool, dict[str, Any]]:
    """Insert or replace the stored order; True when it is new."""
    row = await conn.fetchrow(
        f"""
INSERT INTO orders (workspace_id, {_ORDER_COLUMNS})
SELECT $1, {_ORDER_COLUMNS} FROM jsonb_populate_record(NULL::orders, $2::jsonb)
ON CONFLICT (workspace_id, source, external_id) DO UPDATE SET
    (deal_id, contact_id, company_id, order_number, status, currency, subtotal, discount, tax, shipping,
     total, placed_at, shop_updated_at, body_hash, updated_at)
  = (EXCLUDED.deal_id, EXCLUDED.contact_id, EXCLUDED.company_id, EXCLUDED.order_number, EXCLUDED.status,
     EXCLUDED.currency, EXCLUDED.subtotal, EXCLUDED.discount, EXCLUDED.tax, EXCLUDED.shipping,
     EXCLUDED.total, EXCLUDED.placed_at, EXCLUDED.shop_updated_at, EXCLUDED.body_hash, EXCLUDED.updated_at)
RETURNING (xmax = 0) AS inserted, {_ORDER_COLUMNS}
""",
        workspace_id,
        jsonutil.dumps_str(order),
    )
    out = dict(row)
    return bool(out.pop("inserted")), out


async def replace_line_items(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    deal_id: uuid.UUID,
    items: Sequence[dict[str, Any]],
    at: dt.datetime,
) -> list[dict[str, Any]]:
    """The deal's line items become ``items``, in one statement (a CTE deletes the old ones; fresh ids mean
    the insert cannot collide with them)."""
    rows = [{"id": uuid7(), "position": n, **item} for n, item in enumerate(items)]
    result = await conn.fetch(
        f"""
WITH gone AS (
    DELETE FROM deal_line_items WHERE workspace_id = $1 AND deal_id = $2
)
INSERT INTO deal_line_items (workspace_id, {_LINE_COLUMNS})
SELECT $1, r.id, $2, r.position, r.sku, r.name, r.quantity, r.unit_price, r.discount, r.tax, $4
FROM jsonb_to_recordset($3::jsonb) AS r(
    id uuid, position integer, sku text, name text, quantity integer, unit_price numeric, discount numeric,
    tax numeric
)
RETURNING {_LINE_COLUMNS}
""",
        workspace_id,
        deal_id,
        jsonutil.dumps_str(rows),
        at,
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
    rows = await conn.fetch(
        f"SELECT {_LINE_COLUMNS} FROM deal_line_items WHERE workspace_id = $1 AND deal_id = $2 "
        "AND ($3::integer IS NULL OR (position, id) > ($3, $4::uuid)) ORDER BY position, id LIMIT $5",
        workspace_id,
        deal_id,
        after[0] if after else None,
        after[1] if after else None,
        limit + 1 if limit is not None else None,
    )
    return [dict(r) for r in rows]


# The stages of one pipeline (the named one, else the workspace default), in order.
_STAGES_SQL = """
SELECT s.id, s.pipeline_id, s.kind
FROM pipeline_stages AS s
JOIN pipelines AS p ON p.workspace_id = s.workspace_id AND p.id = s.pipeline_id
WHERE s.workspace_id = $1 AND (p.id = $2 OR ($2 IS NULL AND p.is_default))
ORDER BY s.position
"""


async def stages(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, pipeline_id: uuid.UUID | None
) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(_STAGES_SQL, workspace_id, pipeline_id)]
