"""``/v1/pipelines``: pipelines with their stages inline, and the stage operations."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from ..auth import Principal, require
from ..deps import IfMatch, LockingConn, ReadConn
from ..http import context, json_response, problems, versioned_response
from ..idempotency import idempotent
from ..pagination import Sort, cursor_by, decode_cursor, keyset_page
from ..routing import Route
from . import repository as repo
from . import service
from .schemas import (
    Pipeline,
    PipelineCreate,
    PipelineList,
    PipelineUpdate,
    StageAdd,
    StageOrder,
    StageUpdate,
)

router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"], route_class=Route)
Reader = Annotated[Principal, require("pipelines:read")]
Writer = Annotated[Principal, require("pipelines:write")]
PipelineId = Annotated[uuid.UUID, Path(alias="id")]
StageId = Annotated[uuid.UUID, Path(alias="stage_id")]
_SORT = Sort("created_at", False)
_WRITE_PROBLEMS = problems(404, 409, 412, 422)


def _response(row: dict[str, Any], status: int = 200) -> Response:
    location = f"/v1/pipelines/{row['id']}" if status == 201 else None
    return versioned_response(service.to_api(row), row["version"], status, location)


@router.post(
    "",
    status_code=201,
    operation_id="pipelines_create",
    response_model=Pipeline,
    responses=problems(409, 422),
    summary="Create a pipeline with its stages",
)
@idempotent
async def create(request: Request, body: PipelineCreate, principal: Writer, conn: LockingConn) -> Response:
    row = await service.create(conn, context(request, principal), body.model_dump(exclude_unset=True))
    return _response(row, 201)


@router.get(
    "",
    operation_id="pipelines_list",
    response_model=PipelineList,
    responses=problems(422),
    summary="List pipelines, oldest first",
)
async def list_(
    principal: Reader,
    conn: ReadConn,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    include_archived: bool = False,
) -> Response:
    after = decode_cursor(cursor, _SORT) if cursor else None
    rows = await repo.list_page(conn, principal.workspace_id, after, limit, include_archived)
    return json_response(keyset_page(rows, limit, cursor_by(_SORT), service.to_api))


@router.get(
    "/{id}",
    operation_id="pipelines_get",
    response_model=Pipeline,
    responses=problems(404, 422),
    summary="Get a pipeline",
)
async def get(request: Request, pid: PipelineId, principal: Reader, conn: ReadConn) -> Response:
    return _response(await service.get(conn, context(request, principal), pid))


@router.patch(
    "/{id}",
    operation_id="pipelines_update",
    response_model=Pipeline,
    responses=_WRITE_PROBLEMS,
    summary="Rename a pipeline or make it the default",
)
@idempotent
async def update(
    request: Request,
    pid: PipelineId,
    body: PipelineUpdate,
    principal: Writer,
    conn: LockingConn,
    version: IfMatch,
) -> Response:
    changes = body.model_dump(exclude_unset=True)
    return _response(await service.update(conn, context(request, principal), pid, changes, version))


@router.delete(
    "/{id}",
    operation_id="pipelines_archive",
    response_model=Pipeline,
    responses=_WRITE_PROBLEMS,
    summary="Archive a pipeline (not the default one)",
)
@idempotent
async def archive(
    request: Request, pid: PipelineId, principal: Writer, conn: LockingConn, version: IfMatch
) -> Response:
    return _response(await service.archive(conn, context(request, principal), pid, version))


@router.post(
    "/{id}/restore",
    operation_id="pipelines_restore",
    response_model=Pipeline,
    responses=_WRITE_PROBLEMS,
    summary="Restore an archived pipeline",
)
@idempotent
async def restore(
    request: Request, pid: PipelineId, principal: Writer, conn: LockingConn, version: IfMatch
) -> Response:
    return _response(await service.restore(conn, context(request, principal), pid, version))


@router.post(
    "/{id}/stages",
    operation_id="pipelines_add_stage",
    response_model=Pipeline,
    responses=_WRITE_PROBLEMS,
    summary="Add a stage; answers with the pipeline",
)
@idempotent
async def add_stage(
    request: Request,
    pid: PipelineId,
    body: StageAdd,
    principal: Writer,
    conn: LockingConn,
    version: IfMatch,
) -> Response:
    ctx = context(request, principal)
    return _response(await service.add_stage(conn, ctx, pid, body.model_dump(), version))


@router.patch(
    "/{id}/stages/{stage_id}",
    operation_id="pipelines_update_stage",
    response_model=Pipeline,
    responses=_WRITE_PROBLEMS,
    summary="Rename a stage, or change its probability or kind; answers with the pipeline",
)
@idempotent
async def update_stage(
    request: Request,
    pid: PipelineId,
    sid: StageId,
    body: StageUpdate,
    principal: Writer,
    conn: LockingConn,
    version: IfMatch,
) -> Response:
    ctx = context(request, principal)
    changes = body.model_dump(exclude_unset=True)
    return _response(await service.update_stage(conn, ctx, pid, sid, changes, version))


@router.delete(
    "/{id}/stages/{stage_id}",
    operation_id="pipelines_remove_stage",
    response_model=Pipeline,
    responses=_WRITE_PROBLEMS,
    summary="Remove a stage; a stage holding deals needs move_to_stage_id (409 otherwise)",
)
@idempotent
async def remove_stage(
    request: Request,
    pid: PipelineId,
    sid: StageId,
    principal: Writer,
    conn: LockingConn,
    version: IfMatch,
    move_to_stage_id: Annotated[
        uuid.UUID | None, Query(description="Another stage of this pipeline to move the stage's deals to")
    ] = None,
) -> Response:
    ctx = context(request, principal)
    row = await service.remove_stage(conn, ctx, pid, sid, move_to_stage_id, version)
    return _response(row)


@router.put(
    "/{id}/stages/order",
    operation_id="pipelines_reorder_stages",
    response_model=Pipeline,
    responses=_WRITE_PROBLEMS,
    summary="Reorder the stages: every stage id, in the new order",
)
@idempotent
async def reorder_stages(
    request: Request,
    pid: PipelineId,
    body: StageOrder,
    principal: Writer,
    conn: LockingConn,
    version: IfMatch,
) -> Response:
    ctx = context(request, principal)
    return _response(await service.reorder_stages(conn, ctx, pid, body.stage_ids, version))
