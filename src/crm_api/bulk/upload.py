"""An import's file sent whole in ``POST /v1/imports`` as ``multipart/form-data``: a ``job`` part (the
import as JSON, without ``file``) and then a ``file`` part, streamed into the import's stored parts of
1 MiB as it arrives, in the request's transaction (the import exists with its whole file, or not at all).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from ..errors import BadRequest, FieldError, Unprocessable, field_error
from . import repository as repo
from .multipart import MultipartError, disposition, events
from .schemas import ImportCreate

PART_BYTES = 1 << 20
"""A stored part of the file (as an upload in parts would send them)."""
MAX_JOB_BYTES = 1 << 20
"""The ``job`` part at most (a mapping of a thousand columns fits many times over)."""


def parse(data: bytes, prefix: tuple[str, ...] = ("body",)) -> ImportCreate:
    """The import's JSON, refused as FastAPI refuses a body (a 422 naming the field, 400 for bad JSON)."""
    try:
        return ImportCreate.model_validate_json(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": (*prefix, *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


async def receive(
    conn: Any,
    workspace_id: uuid.UUID,
    stream: Any,
    boundary: bytes,
    begin: Callable[[ImportCreate], Awaitable[Any]],
) -> Any:
    """Read the form; ``begin`` makes the import from its ``job`` part. Answers the queued job's row."""
    job: Any = None
    field: str | None = None
    described = bytearray()
    buffer = bytearray()
    parts = size = 0
    try:
        async for kind, value in events(stream, boundary):
            if kind == "part":
                field, _ = disposition(value)  # type: ignore[arg-type]
                if field == "file" and job is None:
                    raise field_error("/job", "the job part comes before the file part")
                if field not in ("job", "file") or (field == "job" and job is not None):
                    raise field_error(f"/{field or ''}", "expected one job part, then one file part")
            elif kind == "data" and field == "job":
                described += value  # type: ignore[arg-type]
                if len(described) > MAX_JOB_BYTES:
                    raise field_error("/job", f"more than {MAX_JOB_BYTES} bytes")
            elif kind == "data":
                buffer += value  # type: ignore[arg-type]
                while len(buffer) >= PART_BYTES:
                    await repo.IMPORTS.add_part.execute(
                        conn, ws=workspace_id, id=job["id"], part=parts, data=bytes(buffer[:PART_BYTES])
                    )
                    parts, size = parts + 1, size + PART_BYTES
                    del buffer[:PART_BYTES]
            elif field == "job":  # the job part ended
                body = parse(bytes(described), ("job",))
                if body.file is not None:
                    raise field_error("/job/file", "the file comes in the file part")
                try:
                    job = await begin(body)
                except Unprocessable as exc:  # its fields are the job part's
                    exc.errors = [FieldError("/job" + e.path, e.message) for e in exc.errors]
                    raise
    except MultipartError as exc:
        raise BadRequest(f"The body is not valid multipart/form-data: {exc}") from None
    if job is None or field != "file":
        raise field_error("/file", "a job part, then a file part, are required")
    if buffer or not parts:
        await repo.IMPORTS.add_part.execute(
            conn, ws=workspace_id, id=job["id"], part=parts, data=bytes(buffer)
        )
        parts, size = parts + 1, size + len(buffer)
    return await repo.START.fetchrow(conn, ws=workspace_id, id=job["id"], parts=parts, bytes=size)
