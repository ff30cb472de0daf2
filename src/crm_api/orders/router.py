"""``PUT /v1/orders/{source}/{external_id}``, ``POST /v1/orders/batch`` and
``GET /v1/deals/{id}/line-items``.

(No ``from __future__ import annotations``: FastAPI reads the annotations at definition.)
"""

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request, Response

from ..auth import Principal, require
from ..deals.spec import DEALS
from ..deps import LockingConn, read_pool
from ..errors import InvalidCursor
from ..http import context, json_response, problems
from ..idempotency import idempotent
from ..pagination import Sort, cursor_by, decode_cursor, keyset_page
from ..resources import service as resources
from ..routing import Route
from . import repository as repo
from . import service
from .schemas import LineItemList, Order, OrderBatchRequest, OrderBatchResponse, OrderIn

# No prefix or tags on the router: a deal's line items are served here too, under /v1/deals.
router = APIRouter(route_class=Route)
Writer = Annotated[Principal, require("orders:write")]
DealReader = Annotated[Principal, require("deals:read")]


@router.post(
    "/v1/orders/batch",
    tags=["orders"],
    operation_id="orders_batch",
    response_model=OrderBatchResponse,
    responses=problems(409, 422),
    summary="Create or update up to 500 orders",
    description="Each item (`source`, `external_id`, `order`) is applied as `PUT /v1/orders/{source}/"
    "{external_id}` would, on its own: a failed item rolls back alone. The answer is 200 with one result "
    'per item, in order: `{"status": 201 or 200, "object": <order>}` or `{"status": 4xx, "error": '
    "<problem>}`. Needs `orders:write` only.",
)
@idempotent
async def batch(request: Request, body: OrderBatchRequest, principal: Writer, conn: LockingConn) -> Response:
    results = await service.batch(conn, context(request, principal), body.items)
    return json_response({"object": "batch", "results": results})


@router.put(
    "/v1/orders/{source}/{external_id}",
    tags=["orders"],
    operation_id="orders_upsert",
    response_model=Order,
    responses={**problems(409, 422), 201: {"description": "Created", "model": Order}},
    summary="Create or update an order from a shop",
    description="In one transaction: upserts the contact by `customer.email` (linking the company only if "
    "the contact has none), the company by `company.domain` (an existing one keeps its name) and a deal "
    "keyed by the external id `{source}: {external_id}`, moved to a won stage for paid or fulfilled, a "
    "lost stage for refunded or cancelled, open otherwise; replaces the deal's line items; recomputes "
    "the contact's `lifetime_value` and `order_count`. 201 for a new order, 200 otherwise. An order equal "
    "to the stored one, or with an older `updated_at`, changes nothing. Needs `orders:write` only, "
    "though it writes contacts, companies and deals (with their events).",
)
@idempotent
async def upsert(
    request: Request,
    source: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")],
    external_id: Annotated[str, Path(max_length=255, pattern=r"^[^\x00]+$")],
    body: Annotated[OrderIn, Body()],
    principal: Writer,
    conn: LockingConn,
) -> Response:
    status, view = await service.upsert(conn, context(request, principal), source, external_id, body)
    return json_response(view, status)


_LINE_SORT = Sort("position", False)


@router.get(
    "/v1/deals/{id}/line-items",
    tags=["deals"],
    operation_id="deals_list_line_items",
    response_model=LineItemList,
    responses=problems(404, 422),
    summary="List a deal's line items",
    description="The products of the deal's order, in the order's own order, as the last order upsert "
    "left them. Pass `next_cursor` back as `cursor` until `has_more` is false.",
)
async def line_items(
    request: Request,
    oid: Annotated[uuid.UUID, Path(alias="id")],
    principal: DealReader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    conn = read_pool(request)
    ctx = context(request, principal)
    await resources.get(conn, DEALS, ctx, oid)  # 404 for another workspace's deal
    after = decode_cursor(cursor, _LINE_SORT) if cursor else None
    if after is not None and not isinstance(after[0], int):
        raise InvalidCursor("The cursor is not one this API issued")
    rows = await repo.line_items(conn, ctx.workspace_id, oid, after, limit)
    return json_response(keyset_page(rows, limit, cursor_by(_LINE_SORT), service.line_item))
