"""Routes deals have beyond the shared ones: the stage history (the line items are orders', in
orders/router.py)."""

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from ..auth import Principal, require
from ..deps import read_pool
from ..http import context, json_response, problems
from ..pagination import Sort, cursor_by, decode_cursor, keyset_page
from ..resources import service
from ..routing import Route
from . import repository as repo
from .schemas import StageChangeList
from .spec import DEALS

router = APIRouter(prefix="/v1/deals", tags=["deals"], route_class=Route)
Reader = Annotated[Principal, require("deals:read")]
_SORT = Sort("changed_at", False)


def _entry(row: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    until = row["left_at"] or now
    return {
        "object": "deal_stage_change",
        **row,
        "seconds_in_stage": round(max((until - row["changed_at"]).total_seconds(), 0.0), 3),
    }


@router.get(
    "/{id}/stage-history",
    operation_id="deals_stage_history",
    response_model=StageChangeList,
    responses=problems(404, 422),
    summary="List a deal's stage moves",
    description="Oldest first: each move's `from_stage_id` (null for the stage it was created in), "
    "`to_stage_id`, when it came (`changed_at`) and left (`left_at`, null for the current stage), the "
    "`seconds_in_stage` and the `actor`. Pass `next_cursor` back as `cursor` until `has_more` is false.",
)
async def stage_history(
    request: Request,
    oid: Annotated[uuid.UUID, Path(alias="id")],
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    conn = read_pool(request)
    ctx = context(request, principal)
    await service.get(conn, DEALS, ctx, oid)
    after = decode_cursor(cursor, _SORT) if cursor else None
    rows = await repo.stage_history(conn, ctx.workspace_id, oid, after, limit)
    now = dt.datetime.now(dt.UTC)
    return json_response(keyset_page(rows, limit, cursor_by(_SORT), lambda r: _entry(r, now)))
