"""``PUT /v1/orders/{source}/{external_id}`` and ``POST /v1/orders/batch``.

(No ``from __future__ import annotations``: FastAPI reads the annotations at definition.)
"""

from typing import Annotated

from fastapi import APIRouter, Body, Path, Request, Response

from ..auth import Principal, require
from ..deps import LockingConn
from ..http import context, json_response, problems
from ..idempotency import idempotent
from . import service
from .schemas import Order, OrderBatchRequest, OrderBatchResponse, OrderIn

router = APIRouter(prefix="/v1/orders", tags=["orders"])
Writer = Annotated[Principal, require("orders:write")]


@router.post(
    "/batch",
    operation_id="orders_batch",
    response_model=OrderBatchResponse,
    responses=problems(409, 422),
    summary="Create or update up to 500 orders, one result per item",
)
async def batch(request: Request, body: OrderBatchRequest, principal: Writer, conn: LockingConn) -> Response:
    async def run() -> Response:
        results = await service.batch(conn, context(request, principal), body.items)
        return json_response({"object": "batch", "results": results})

    return await idempotent(request, conn, principal, run)


@router.put(
    "/{source}/{external_id}",
    operation_id="orders_upsert",
    response_model=Order,
    responses={**problems(409, 422), 201: {"description": "Created", "model": Order}},
    summary="Create or update an order from an ecommerce platform, with its contact, company and deal",
)
async def upsert(
    request: Request,
    source: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")],
    external_id: Annotated[str, Path(max_length=255, pattern=r"^[^\x00]+$")],
    body: Annotated[OrderIn, Body()],
    principal: Writer,
    conn: LockingConn,
) -> Response:
    async def run() -> Response:
        status, view = await service.upsert(conn, context(request, principal), source, external_id, body)
        return json_response(view, status)

    return await idempotent(request, conn, principal, run)
