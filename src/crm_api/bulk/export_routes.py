"""``/v1/exports``: ask for an export, follow it, download its file (gzip when asked). The workers write
the file (``bulk/exports.py``); it is kept for 7 days."""

import datetime as dt
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from ..auth import Principal, require
from ..deps import LockingConn, read_pool
from ..errors import Conflict, FieldError, Unprocessable
from ..http import json_response, problems
from ..idempotency import idempotent
from ..routing import Route
from . import repository as repo
from .exports import conditions, field_names, field_problem
from .jobroutes import JobId, JobRoutes
from .mapping import OBJECTS
from .schemas import Export, ExportCreate, export_api

router = APIRouter(tags=["exports"], route_class=Route)
jobs = JobRoutes(router, "export", repo.EXPORTS, export_api, Export, " (or it expired)")
Reader = Annotated[Principal, require("exports:read")]
Writer = Annotated[Principal, require("exports:write")]
KEPT = dt.timedelta(days=7)
MEDIA = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}


@jobs.post(
    "",
    "create",
    "Export every contact, company, deal, activity or ticket that matches a filter",
    "Answers 202 with the job; a worker writes the file from one snapshot (writes made "
    "meanwhile are in it wholly or not at all), with no row cap. The key needs `exports:write` and "
    "`<object_type>:read`.",
    409,
    status_code=202,
)
@idempotent
async def create(request: Request, body: ExportCreate, principal: Writer, conn: LockingConn) -> Response:
    jobs.needs(principal, body.object_type, "read")
    spec = OBJECTS[body.object_type]
    fields = body.fields or field_names(spec)
    errors = [FieldError(f"/fields/{i}", p) for i, f in enumerate(fields) if (p := field_problem(spec, f))]
    if errors:
        raise Unprocessable("The export names fields the object does not have", errors)
    await conditions(conn, spec, principal.workspace_id, body.filter, body.include_archived)  # 422s now
    now = dt.datetime.now(dt.UTC)
    row = await jobs.create(
        conn,
        request,
        principal,
        "queued",
        now,
        object_type=body.object_type,
        format=body.format,
        filter=body.filter,
        fields=fields,
        include_archived=body.include_archived,
        expires_at=now + KEPT,
    )
    return json_response(export_api(row), 202)


jobs.add_get(
    "An export's status and row count",
    "`status` (`queued`, `running`, `succeeded`, `failed`), and once it succeeded the `rows` written and "
    "the file's size in `bytes`. An export is kept until `expires_at` (7 days), then a 404.",
)


@router.get(
    "/v1/exports/{id}/file",
    operation_id="exports_file",
    responses={
        **problems(404, 409, 422),
        200: {
            "description": "The file, streamed (`Content-Encoding: gzip` when the request accepts it)",
            "content": {m: {"schema": {"type": "string"}} for m in MEDIA.values()},
        },
    },
    summary="Download an export's file",
    description="The file as the worker wrote it, streamed part by part; gzip-compressed on the way when "
    "`Accept-Encoding` names gzip. 409 until the export has succeeded.",
)
async def file(request: Request, job_id: JobId, principal: Reader) -> Response:
    conn = read_pool(request)
    job = await jobs.load(conn, principal, job_id)
    if job["status"] != "succeeded":
        raise Conflict(f"The export is {job['status']}: its file is not ready")
    gzip = "gzip" in request.headers.get("accept-encoding", "").lower()
    headers = {
        "Content-Disposition": f'attachment; filename="{job["object_type"]}-{job_id}.{job["format"]}"',
        "Vary": "Accept-Encoding",
    }
    if gzip:
        headers["Content-Encoding"] = "gzip"
    else:
        headers["Content-Length"] = str(job["bytes"])
    body = _parts(conn, principal.workspace_id, job_id, job["parts"], gzip)
    return StreamingResponse(body, media_type=MEDIA[job["format"]], headers=headers)


async def _parts(conn: Any, ws: uuid.UUID, job_id: uuid.UUID, count: int, gzip: bool) -> AsyncIterator[bytes]:
    """The stored parts one at a time (memory flat whatever the file's size), compressed on the way."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31) if gzip else None  # 31: gzip framing; 1: fast
    for n in range(count):
        data = bytes(await repo.EXPORTS.part.fetchval(conn, ws=ws, id=job_id, part=n))
        yield packer.compress(data) if packer is not None else data
    if packer is not None:
        yield packer.flush()
