"""``/v1/pipelines``: pipelines with their stages inline, and the stage operations."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from ..auth import Principal, require
from ..deps import IfMatch, LockingConn, read_pool
from ..http import (
    NOT_MODIFIED,
    context,
    if_none_match,
    json_response,
    not_modified,
    problems,
    success,
    versioned_response,
)
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
_WRITTEN = {**problems(404, 409, 412, 422), **success(200, "ETag")}
_IF_MATCH = (
    "With `If-Match` (the pipeline's `ETag`) it applies only if the pipeline is still at that version: "
    "otherwise 412 and nothing changes."
)
_ANSWER = "Answers with the whole pipeline and its new version as `ETag`. " + _IF_MATCH


def _response(row: dict[str, Any], status: int = 200) -> Response:
    location = f"/v1/pipelines/{row['id']}" if status == 201 else None
    return versioned_response(service.to_api(row), row["version"], status, location)


@router.post(
    "",
    status_code=201,
    operation_id="pipelines_create",
    response_model=Pipeline,
    responses={**problems(409, 422), **success(201, "ETag", "Location")},
    summary="Create a pipeline with its stages",
    description="1 to 50 stages with unique names, at least one of them open (`kind` open, won or lost); "
    "`probability` defaults to 1 for won stages and 0 otherwise, `position` to the order given. "
    "`is_default: true` makes it the workspace's default pipeline (where deals without a `pipeline_id` "
    "go). Answers 201 with `Location` and `ETag`. Emits `pipeline.created`.",
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
    description="Live pipelines with their stages inline (archived ones too with "
    "`include_archived=true`), oldest first. Pass `next_cursor` back as `cursor` until `has_more` is "
    "false.",
)
async def list_(
    principal: Reader,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    include_archived: bool = False,
) -> Response:
    conn = read_pool(request)
    after = decode_cursor(cursor, _SORT) if cursor else None
    rows = await repo.list_page(conn, principal.workspace_id, after, limit, include_archived)
    return json_response(keyset_page(rows, limit, cursor_by(_SORT), service.to_api))


@router.get(
    "/{id}",
    operation_id="pipelines_get",
    response_model=Pipeline,
    responses={**problems(404, 422), **success(200, "ETag"), **NOT_MODIFIED},
    openapi_extra={"parameters": [if_none_match()]},
    summary="Get a pipeline",
    description="The pipeline with its stages in order, archived or not, and its version as `ETag` (every "
    "change to it or its stages raises the version).",
)
async def get(request: Request, pid: PipelineId, principal: Reader) -> Response:
    conn = read_pool(request)
    row = await service.get(conn, context(request, principal), pid)
    return not_modified(request, row["version"]) or _response(row)


@router.patch(
    "/{id}",
    operation_id="pipelines_update",
    response_model=Pipeline,
    responses=_WRITTEN,
    summary="Rename a pipeline or make it the default",
    description="`is_default: true` takes the default over from the current one (`false` is refused: make "
    "another pipeline the default instead); an archived pipeline cannot be the default. "
    + _ANSWER
    + " Emits `pipeline.updated`.",
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
    responses=_WRITTEN,
    summary="Archive a pipeline (not the default one)",
    description="A soft delete: sets `archived_at`; its deals stay where they are. The default pipeline "
    "cannot be archived (409). " + _ANSWER + " Emits `pipeline.archived`.",
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
    responses=_WRITTEN,
    summary="Restore an archived pipeline",
    description="Clears `archived_at`. " + _ANSWER + " Emits `pipeline.restored`.",
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
    responses=_WRITTEN,
    summary="Add a stage to a pipeline",
    description="Inserts the stage at `position` (0 first; last by default) and renumbers the others. "
    "Stage names are unique within the pipeline; at most 50 stages. "
    + _ANSWER
    + " Emits `pipeline.updated`.",
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
    responses=_WRITTEN,
    summary="Rename a stage, or change its probability or kind",
    description="`kind` changes only while the stage holds no deals (409 otherwise, also when a deal "
    "enters it meanwhile); the pipeline keeps at least one open stage. "
    + _ANSWER
    + " Emits `pipeline.updated`.",
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
    responses=_WRITTEN,
    summary="Remove a stage from a pipeline",
    description="A stage holding deals needs `move_to_stage_id`, another stage of the pipeline: its deals "
    "move there, each move a stage change with its events and history (without it, 409; a deal entering "
    "the stage meanwhile is a 409 too: retry). " + _ANSWER + " Emits `pipeline.updated`.",
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
    responses=_WRITTEN,
    summary="Reorder a pipeline's stages",
    description="`stage_ids` lists every stage of the pipeline exactly once, in the new order (a partial "
    "list is a 422). " + _ANSWER + " Emits `pipeline.updated`.",
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
