"""``POST /v1/{contacts,companies}/duplicates`` and ``POST /v1/{contacts,companies}/{id}/merge``.

(No ``from __future__ import annotations``: FastAPI reads the closures' annotations at definition.)
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import create_model

from ..auth import Principal, require
from ..deps import LockingConn, read_pool
from ..errors import Forbidden
from ..http import context, json_response, problems
from ..idempotency import idempotent
from ..resources.spec import ResourceSpec
from ..routing import Route
from . import duplicates, service
from .schemas import (
    CompanyDuplicatesRequest,
    ContactDuplicatesRequest,
    DuplicatesResponse,
    MergeRequest,
    MergeResultBase,
)

# A merge rewrites the records that point at the merged ones, so it needs the right to write those too.
MOVES = {
    "contacts": ("deals:write", "activities:write", "tickets:write"),
    "companies": ("contacts:write", "deals:write", "activities:write", "tickets:write"),
}


def merge_router(spec: ResourceSpec) -> APIRouter:
    name = spec.name
    Reader = Annotated[Principal, require(f"{name}:read")]
    Writer = Annotated[Principal, require(f"{name}:write")]

    async def merger(principal: Writer) -> Principal:
        """The writer, who must also hold the scopes of what the merge moves (before any Idempotency-Key
        replay, which would show the merge's result)."""
        lacking = [scope for scope in MOVES[name] if not principal.allows(scope)]
        if lacking:
            raise Forbidden(f"A merge moves references: this API key lacks {', '.join(lacking)}")
        return principal

    Merger = Annotated[Principal, Depends(merger)]
    ObjectId = Annotated[uuid.UUID, Path(alias="id")]
    Find: Any = ContactDuplicatesRequest if name == "contacts" else CompanyDuplicatesRequest
    Result: Any = create_model(
        f"{spec.read_schema.__name__}MergeResult", __base__=MergeResultBase, survivor=(spec.read_schema, ...)
    )
    router = APIRouter(prefix=f"/v1/{spec.url_segment}", tags=[name], route_class=Route)

    @router.post(
        "/duplicates",
        operation_id=f"{name}_duplicates",
        response_model=DuplicatesResponse,
        responses=problems(404, 422),
        summary=f"Find likely duplicates of {name} or of payloads",
        description="Among live records: "
        + (
            "same normalised email, same phone digits (E.164 without inference), same name at the same "
            "company, fuzzy name (pg_trgm)."
            if name == "contacts"
            else "same normalised domain, fuzzy name (pg_trgm)."
        ),
    )
    async def find_duplicates(request: Request, body: Find, principal: Reader) -> Response:
        conn = read_pool(request)
        data = await duplicates.find(
            conn,
            spec,
            context(request, principal),
            body.ids,
            [r.model_dump() for r in body.records],
            body.threshold,
            body.limit,
        )
        return json_response({"object": "duplicates", "data": data})

    @router.post(
        "/{id}/merge",
        operation_id=f"{name}_merge",
        response_model=Result,
        responses=problems(404, 409, 422),
        summary=f"Merge other {name} into this one",
        description=f"Moves every reference to the survivor, fills its empty fields (or as `prefer` says), "
        f"archives the others with `merged_into` and emits `{spec.object}.merged`. 409: merging into itself; "
        "404: unknown ids; 422: an already merged record or an archived survivor. Besides "
        f"`{name}:write` the key needs {', '.join(f'`{s}`' for s in MOVES[name])}.",
    )
    @idempotent
    async def merge(
        request: Request, oid: ObjectId, body: MergeRequest, principal: Merger, conn: LockingConn
    ) -> Response:
        result = await service.merge(
            conn, spec, context(request, principal), oid, body.from_, body.prefer, body.dry_run
        )
        return json_response(result)

    return router
