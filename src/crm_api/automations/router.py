"""Routes automations have beyond the shared ones: their runs, and a test on a record that writes nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from ..auth import Principal, require
from ..deps import LockingConn, read_pool
from ..errors import NotFound, field_error
from ..http import json_response, problems
from ..idempotency import idempotent
from ..pagination import Sort, cursor_by, decode_cursor, keyset_page
from ..resources import repository as resources
from ..routing import Route
from . import actions
from . import repository as repo
from .actor import context as run_context
from .schemas import AutomationRunList, AutomationTestRequest, AutomationTestResult
from .spec import AUTOMATIONS, target

router = APIRouter(prefix="/v1/automations", tags=["automations"], route_class=Route)
Reader = Annotated[Principal, require("automations:read")]
Writer = Annotated[Principal, require("automations:write")]
AutomationId = Annotated[uuid.UUID, Path(alias="id")]
Limit = Annotated[int, Query(ge=1, le=200)]
_RUN_SORT = Sort("created_at", True)
_NEWEST = (dt.datetime.max.replace(tzinfo=dt.UTC), uuid.UUID(int=2**128 - 1))


async def _automation(conn: Any, ws: uuid.UUID, automation_id: uuid.UUID) -> dict[str, Any]:
    row = await resources.fetch_one(conn, AUTOMATIONS, ws, automation_id)
    if row is None:
        raise NotFound(f"No automation with id {automation_id}")
    return row


def _run_api(row: Any) -> dict[str, Any]:
    return {"object": "automation_run", **dict(row)}


@router.get(
    "/{id}/runs",
    operation_id="automations_list_runs",
    response_model=AutomationRunList,
    responses=problems(404, 422),
    summary="List an automation's runs",
    description="Newest first: the triggering event, the run's depth in a chain of automations, its "
    "status, each action done with the object it touched and what it changed, and the error of a failed "
    "run. Pass `next_cursor` back as `cursor` until `has_more` is false. Needs `automations:read`.",
)
async def list_runs(
    request: Request, aid: AutomationId, principal: Reader, limit: Limit = 50, cursor: str | None = None
) -> Response:
    conn = read_pool(request)
    await _automation(conn, principal.workspace_id, aid)
    before = decode_cursor(cursor, _RUN_SORT) if cursor else _NEWEST
    rows = await repo.RUNS_PAGE.fetch(
        conn,
        ws=principal.workspace_id,
        automation=aid,
        before_at=before[0],
        before=before[1],
        limit=limit + 1,
    )
    return json_response(keyset_page(rows, limit, cursor_by(_RUN_SORT), _run_api))


@router.post(
    "/{id}/test",
    operation_id="automations_test",
    response_model=AutomationTestResult,
    responses=problems(404, 409, 422),
    summary="Show what an automation would do to a record, changing nothing",
    description="Whether the trigger's filter holds for the record (`object_id`, of the trigger's object "
    "type) and what each action would change, in order, through the same checks as a run; nothing is "
    "written and no event is emitted. An action the rules would refuse is a 422 naming "
    "`/actions/<i>/...`. Needs `automations:write`.",
)
@idempotent
async def test_automation(
    request: Request, body: AutomationTestRequest, aid: AutomationId, principal: Writer, conn: LockingConn
) -> Response:
    ws = principal.workspace_id
    automation = await _automation(conn, ws, aid)
    spec = target(automation["trigger"])
    assert spec is not None  # checked on save
    row = await resources.fetch_one(conn, spec, ws, body.object_id)
    if row is None or row["archived_at"] is not None:
        raise field_error("/object_id", f"no live {spec.object} has this id")
    matches = True
    if automation["trigger"].get("filter") is not None:
        found = await repo.matching(conn, spec, ws, automation["trigger"]["filter"], [row["id"]])
        matches = row["id"] in found
    ctx = run_context(ws, aid, uuid.UUID(int=0), 1)
    done = await actions.perform(
        conn, spec, ctx, automation["actions"], row, now=dt.datetime.now(dt.UTC), dry_run=True
    )
    return json_response({"object": "automation_test", "matches": matches, "actions": done})
