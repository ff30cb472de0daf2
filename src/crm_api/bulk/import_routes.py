"""``/v1/imports``: create an import (its file inline, or uploaded in parts), follow it, read its row
errors, cancel it. The workers run it (``bulk/imports.py``)."""

import csv
import io
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from ..auth import Principal, require
from ..deps import LockingConn, read_pool
from ..errors import BadRequest, Conflict, CRMError, FieldError, InvalidCursor, Unprocessable, field_error
from ..http import json_response, problems, request_body
from ..idempotency import idempotent
from ..resources.custom_fields import enforce
from ..routing import Route
from . import custom_key, upload
from . import repository as repo
from .jobroutes import JobId, JobRoutes
from .mapping import OBJECTS, target_problem, upsert_problem
from .multipart import boundary_of
from .schemas import MAX_PARTS, Import, ImportCreate, ImportPart, ImportUpload, RowErrorList, import_api

router = APIRouter(tags=["imports"], route_class=Route)
jobs = JobRoutes(router, "import", repo.IMPORTS, import_api, Import)
Reader = Annotated[Principal, require("imports:read")]
Writer = Annotated[Principal, require("imports:write")]
_job = jobs.load


async def _check(conn: Any, body: ImportCreate, principal: Principal) -> None:
    jobs.needs(principal, body.object_type, "write")
    spec = OBJECTS[body.object_type]
    errors = [
        FieldError(f"/mapping/{column}", problem)
        for column, target in body.mapping.items()
        if target is not None and (problem := target_problem(spec, target)) is not None
    ]
    if body.upsert_key is not None and (problem := upsert_problem(spec, body.upsert_key)) is not None:
        errors.append(FieldError("/upsert_key", problem))
    elif (name := custom_key.field_of(body.upsert_key)) is not None:
        definitions = await enforce.definitions(conn, principal.workspace_id, spec.object)
        if (problem := custom_key.definition_problem(definitions, name)) is not None:
            errors.append(FieldError("/upsert_key", problem))
    if errors:
        raise Unprocessable("The import cannot be run as described", errors)


def _unkeyed_upload(request: Request) -> None:
    """A multipart upload's body is not kept, so it cannot be compared with a retry's."""
    if "idempotency-key" in request.headers and boundary_of(request.headers.get("content-type", "")):
        raise BadRequest(
            "Idempotency-Key must be left out of a multipart upload (its body is not kept to compare with a "
            "retry's): send the file in parts, each retried safely, to resume a large upload"
        )


@jobs.post(
    "",
    "create",
    "Import a file of contacts, companies, deals, activities or tickets",
    "Answers 202 with the job. With `file` the job is queued at once; without it, it waits in "
    "`uploading` for its parts and `POST /v1/imports/{id}/start`. The key needs `imports:write` and "
    "`<object_type>:write`.",
    409,
    status_code=202,
    dependencies=[Depends(_unkeyed_upload)],
    openapi_extra=request_body(
        {"application/json": ImportCreate, "multipart/form-data": ImportUpload},
        **{"multipart/form-data": {"job": {"contentType": "application/json"}}},
    ),
)
@idempotent
async def create(request: Request, principal: Writer, conn: LockingConn) -> Response:
    boundary = boundary_of(request.headers.get("content-type", ""))

    async def begin(body: ImportCreate) -> Any:
        await _check(conn, body, principal)
        return await jobs.create(
            conn,
            request,
            principal,
            "uploading",  # queued once its file is stored
            object_type=body.object_type,
            format=body.format,
            mapping=body.mapping,
            upsert_key=body.upsert_key,
            dry_run=body.dry_run,
            create_missing_companies=body.create_missing_companies,
        )

    ws = principal.workspace_id
    if boundary is not None:
        row = await upload.receive(conn, ws, request.stream(), boundary, begin)
        return json_response(import_api(row), 202)
    body = upload.parse(await request.body())
    row = await begin(body)
    if body.file is not None:
        data = body.file.encode()
        await repo.IMPORTS.add_part.execute(conn, ws=ws, id=row["id"], part=0, data=data)
        row = await repo.START.fetchrow(conn, ws=ws, id=row["id"], parts=1, bytes=len(data))
    return json_response(import_api(row), 202)


@router.put(
    "/v1/imports/{id}/parts/{part}",
    operation_id="imports_upload_part",
    response_model=ImportPart,
    responses=problems(404, 409, 422),
    summary="Upload one part of an import's file",
    description="The body is the part's bytes as they are (any content type), up to the body limit; parts "
    "are numbered from 0 and joined in order, so a part may end mid-line. Uploading a part again replaces "
    "it. Only while the import is `uploading` (409 after).",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
@idempotent
async def upload_part(
    request: Request,
    job_id: JobId,
    part: Annotated[int, Path(ge=0, lt=MAX_PARTS)],
    principal: Writer,
    conn: LockingConn,
) -> Response:
    job = await _job(conn, principal, job_id)
    if job["status"] != "uploading":
        raise Conflict(f"The import is {job['status']}: it takes no more parts")
    data = await request.body()
    if not data:
        raise field_error("/body", "a part holds at least one byte")
    await repo.IMPORTS.add_part.execute(conn, ws=principal.workspace_id, id=job_id, part=part, data=data)
    return json_response({"object": "import_part", "part": part, "bytes": len(data)})


@jobs.post(
    "/{id}/start",
    "start",
    "Queue an uploaded import",
    "Queues an import whose file was uploaded in parts. The parts must run from 0 without a gap "
    "(422 naming the first missing one); an import no longer `uploading` is a 409.",
    404,
    409,
    status_code=202,
)
@idempotent
async def start(request: Request, job_id: JobId, principal: Writer, conn: LockingConn) -> Response:
    job = await _job(conn, principal, job_id)
    if job["status"] != "uploading":
        raise Conflict(f"The import is {job['status']}, not uploading")
    count, last, size = await repo.PARTS_SUMMARY.fetchrow(conn, ws=principal.workspace_id, id=job_id)
    if count == 0:
        raise field_error("/parts", "no part uploaded")
    if count != last + 1:
        missing = await _first_missing(conn, principal.workspace_id, job_id, last)
        raise field_error("/parts", f"part {missing} is missing")
    row = await repo.START.fetchrow(conn, ws=principal.workspace_id, id=job_id, parts=count, bytes=size)
    return json_response(import_api(row), 202)


async def _first_missing(conn: object, ws: uuid.UUID, job_id: uuid.UUID, last: int) -> int:
    for n in range(last + 1):  # only on a failed start: a client's mistake, not the common path
        if await repo.IMPORTS.part_data(conn, ws, job_id, n) is None:
            return n
    return last + 1


jobs.add_get(
    "An import's status and progress",
    "`status` (`uploading`, `queued`, `running`, `succeeded`, `failed`, `cancelled`), `rows_total` once a "
    "worker has read the file, `rows_done` and the counts of rows `created`, `updated`, `unchanged` and "
    "`failed`.",
)


@jobs.post(
    "/{id}/cancel",
    "cancel",
    "Cancel an import",
    "Chunks already written stay written; the one in flight completes, and no other follows. "
    "An import that has ended is a 409.",
    404,
    409,
)
@idempotent
async def cancel(request: Request, job_id: JobId, principal: Writer, conn: LockingConn) -> Response:
    row = await repo.CANCEL.fetchrow(conn, ws=principal.workspace_id, id=job_id)
    if row is None:
        job = await _job(conn, principal, job_id)
        raise Conflict(f"The import has already ended: {job['status']}")
    return json_response(import_api(row))


def _cursor(value: str | None) -> tuple[int, int]:
    if value is None:
        return 0, -1
    try:
        row, n = (int(v) for v in value.split(".", 1))
    except ValueError:
        raise InvalidCursor() from None
    return row, n


@router.get(
    "/v1/imports/{id}/errors",
    operation_id="imports_errors",
    response_model=RowErrorList,
    responses={
        **problems(404, 422),
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "The row errors"},
    },
    summary="An import's row errors, in row order",
    description="JSON pages (`limit`, `cursor`), or the whole list as CSV (`row,column,code,message`) with "
    "`format=csv`.",
)
async def errors(
    job_id: JobId,
    principal: Reader,
    request: Request,
    format: Literal["json", "csv"] = "json",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Response:
    conn = read_pool(request)
    await _job(conn, principal, job_id)
    ws = principal.workspace_id
    if format == "csv":
        return StreamingResponse(_errors_csv(conn, ws, job_id), media_type="text/csv")
    row, n = _cursor(cursor)
    rows = await repo.ERRORS_PAGE.fetch(conn, ws=ws, id=job_id, row=row, n=n, limit=limit + 1)
    data = [{k: r[k] for k in ("row", "column", "code", "message")} for r in rows[:limit]]
    more = len(rows) > limit
    next_cursor = f"{rows[limit - 1]['row']}.{rows[limit - 1]['n']}" if more else None
    return json_response({"object": "list", "data": data, "has_more": more, "next_cursor": next_cursor})


async def _errors_csv(conn: object, ws: uuid.UUID, job_id: uuid.UUID) -> AsyncIterator[bytes]:
    row, n = 0, -1
    header = True
    while True:
        rows = await repo.ERRORS_PAGE.fetch(conn, ws=ws, id=job_id, row=row, n=n, limit=5000)
        out = io.StringIO()
        writer = csv.writer(out)
        if header:
            writer.writerow(["row", "column", "code", "message"])
            header = False
        writer.writerows([r["row"], r["column"] or "", r["code"], r["message"]] for r in rows)
        yield out.getvalue().encode()
        if len(rows) < 5000:
            return
        row, n = rows[-1]["row"], rows[-1]["n"]


__all__ = ["CRMError", "router"]
