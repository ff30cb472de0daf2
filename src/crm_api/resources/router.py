"""Routes every resource gets, built from its spec: the HTTP contract of API.md in one place.

(No ``from __future__ import annotations`` here: FastAPI reads the closures' annotations at definition.)
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request, Response

from ..auth import Principal, authorize, require
from ..deps import IfMatch, LockingConn, WriteConn, read_pool
from ..errors import PROBLEM_JSON
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
from ..idempotency import folding, idempotent
from ..routing import Route, canonical_uuid, handle_directly
from . import batch, docs, includes, query, service
from .custom_fields import enforce as custom_fields
from .schemas import SearchRequest, SegmentSearchRequest, batch_models, list_model
from .spec import ResourceSpec

IF_NONE_MATCH = if_none_match("Not read with `include=`, whose related objects change on their own.")


def object_response(spec: ResourceSpec, row: dict[str, Any], status: int = 200) -> Response:
    location = f"/v1/{spec.url_segment}/{row['id']}" if status == 201 else None
    return versioned_response(spec.to_api(row), row["version"], status, location)


def _sort_doc(spec: ResourceSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "sort",
        "in": "query",
        "schema": {"type": "string", "enum": [*spec.sorts, *(f"-{s}" for s in spec.sorts)]},
    }
    if custom_fields.applies(spec):  # names of custom fields differ per workspace: a pattern, not an enum
        columns = "|".join(spec.sorts)
        doc["schema"] = {
            "type": "string",
            "pattern": rf"^-?({columns}|custom_fields\.[a-z][a-z0-9_]{{0,62}})$",
        }
        doc["description"] = (
            f"{', '.join(spec.sorts)} or custom_fields.<name> (a live field that is not boolean or "
            "multi_enum); a leading - sorts descending. A custom field sort lists only records that have "
            "a value for it."
        )
    return doc


def list_parameters(spec: ResourceSpec) -> dict[str, Any]:
    """The query parameters of a list of ``spec``'s objects (``query.list_page``), as ``openapi_extra``."""
    schema_of = {
        "text": {"type": "string"},
        "text[]": {"type": "string"},
        "uuid": {"type": "string", "format": "uuid"},
        "uuid[]": {"type": "string", "format": "uuid"},
        "timestamptz": {"type": "string", "format": "date-time"},
        "boolean": {"type": "boolean"},
        "bigint": {"type": "integer"},
        "numeric": {"type": "string"},
        "date": {"type": "string", "format": "date"},
    }
    params = [
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
        },
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
        _sort_doc(spec),
        {"name": "include_archived", "in": "query", "schema": {"type": "boolean", "default": False}},
    ]
    if spec.searched:
        params.append(
            {
                "name": "q",
                "in": "query",
                "description": f"A case-insensitive part of the {spec.searched}",
                "schema": {"type": "string"},
            }
        )
    for qp in spec.query_params:
        doc = {"name": qp.name, "in": "query", "schema": schema_of[qp.type]}
        if qp.description:
            doc["description"] = qp.description
        params.append(doc)
    return {"parameters": params + includes.parameters(spec)}


def build_router(spec: ResourceSpec) -> APIRouter:
    name, Create, Update, Read = spec.name, spec.create_schema, spec.update_schema, spec.read_schema
    List = list_model(Read)
    BatchRequest, BatchResponse = batch_models(Create, Read)
    Reader = Annotated[Principal, require(f"{name}:read")]
    Writer = Annotated[Principal, require(f"{name}:write")]
    ObjectId = Annotated[uuid.UUID, Path(alias="id")]
    router = APIRouter(prefix=f"/v1/{spec.url_segment}", tags=[name], route_class=Route)
    segmented = any(qp.op == "segment" for qp in spec.query_params)
    Search: Any = SegmentSearchRequest if segmented else SearchRequest

    @router.get(
        "",
        operation_id=f"{name}_list",
        response_model=List,
        responses=problems(422),
        openapi_extra=list_parameters(spec),
        **docs.list_doc(spec).route(),
    )
    async def list_(request: Request, principal: Reader) -> Response:
        conn = read_pool(request)
        page = await query.list_page(conn, spec, context(request, principal), request.query_params)
        return json_response(page)

    reading = f"{name}:read"

    async def list_directly(request: Request) -> Response:
        return await list_(request, await authorize(request, reading))

    handle_directly(router, list_, list_directly)

    @router.post(
        "",
        status_code=201,
        operation_id=f"{name}_create",
        response_model=Read,
        responses={**problems(409, 422), **success(201, "ETag", "Location")},
        **docs.create_doc(spec).route(),
    )
    @idempotent
    async def create(request: Request, body: Create, principal: Writer, conn: WriteConn) -> Response:
        folding(spec, lambda row: object_response(spec, row, 201))
        row = await service.create(
            conn, spec, context(request, principal), body.model_dump(exclude_unset=True)
        )
        return object_response(spec, row, 201)

    @router.post(
        "/search",
        operation_id=f"{name}_search",
        response_model=List,
        responses=problems(422),
        openapi_extra={"parameters": includes.parameters(spec)},
        **docs.search_doc(spec).route(),
    )
    async def search(request: Request, body: Search, principal: Reader) -> Response:
        conn = read_pool(request)
        shaping = includes.requested(spec, request.query_params)
        page = await query.search(
            conn, spec, context(request, principal), body.model_dump(), includes.joined(shaping)
        )
        if shaping is not None:
            page["data"] = await includes.shape(conn, spec, principal.workspace_id, page["data"], shaping)
        return json_response(page)

    @router.post(
        "/batch",
        operation_id=f"{name}_batch",
        response_model=BatchResponse,
        responses=problems(409, 422),
        **docs.batch_doc(spec).route(),
    )
    @idempotent
    async def batch_(request: Request, body: BatchRequest, principal: Writer, conn: LockingConn) -> Response:
        results = await batch.run(conn, spec, context(request, principal), body.items, body.mode)
        return json_response({"object": "batch", "results": results})

    get_responses = {**problems(404, 422), **success(200, "ETag"), **NOT_MODIFIED}
    if spec.field_type("merged_into") is not None:
        get_responses[301] = {
            "description": "The object was merged into another: `Location` and `merged_into` name the "
            "survivor (writes to a merged object answer 409 with code `merged`)",
            "headers": {"Location": {"schema": {"type": "string"}, "description": f"/v1/{name}/<survivor>"}},
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }

    _written = {**problems(404, 409, 412, 422), **success(200, "ETag")}
    _upserted = {
        **problems(409, 422),
        **success(200, "ETag"),
        **success(201, "ETag", "Location", model=Read, description="Created"),
    }

    @router.get(
        "/{id}",
        operation_id=f"{name}_get",
        response_model=Read,
        responses=get_responses,
        openapi_extra={"parameters": [IF_NONE_MATCH, *includes.parameters(spec)]},
        **docs.get_doc(spec).route(),
    )
    async def get(request: Request, oid: ObjectId, principal: Reader) -> Response:
        conn = read_pool(request)
        # the query string is read only when there is one: a plain GET costs what it always did
        shaping = includes.requested(spec, request.query_params) if request.scope["query_string"] else None
        joined = includes.joined(shaping)  # read in the object's own statement
        row = await service.get(conn, spec, context(request, principal), oid, joined)
        if shaping is None or not shaping.includes:  # related objects have versions of their own
            unchanged = not_modified(request, row["version"])
            if unchanged is not None:
                return unchanged
        if shaping is None:
            return object_response(spec, row)
        obj = includes.converter(spec, joined)(row)
        shaped = await includes.shape(conn, spec, principal.workspace_id, [obj], shaping)
        return versioned_response(shaped[0], row["version"])

    async def get_directly(request: Request) -> Response | None:
        oid = canonical_uuid(request.scope["path_params"].get("id"))
        if oid is None:
            return None  # FastAPI validates it, after authenticating, as before
        return await get(request, oid, await authorize(request, reading))

    handle_directly(router, get, get_directly)

    @router.patch(
        "/{id}",
        operation_id=f"{name}_update",
        response_model=Read,
        responses=_written,
        **docs.update_doc(spec).route(),
    )
    @idempotent
    async def update(
        request: Request,
        oid: ObjectId,
        body: Update,
        principal: Writer,
        conn: WriteConn,
        version: IfMatch,
    ) -> Response:
        changes = body.model_dump(exclude_unset=True)
        folding(spec, lambda row: object_response(spec, row))
        row = await service.update(conn, spec, context(request, principal), oid, changes, version)
        return object_response(spec, row)

    @router.delete(
        "/{id}",
        operation_id=f"{name}_archive",
        response_model=Read,
        responses=_written,
        **docs.archive_doc(spec).route(),
    )
    @idempotent
    async def archive(
        request: Request, oid: ObjectId, principal: Writer, conn: WriteConn, version: IfMatch
    ) -> Response:
        folding(spec, lambda row: object_response(spec, row))
        return object_response(
            spec, await service.archive(conn, spec, context(request, principal), oid, version)
        )

    @router.post(
        "/{id}/restore",
        operation_id=f"{name}_restore",
        response_model=Read,
        responses=_written,
        **docs.restore_doc(spec).route(),
    )
    @idempotent
    async def restore(
        request: Request, oid: ObjectId, principal: Writer, conn: WriteConn, version: IfMatch
    ) -> Response:
        folding(spec, lambda row: object_response(spec, row))
        return object_response(
            spec, await service.restore(conn, spec, context(request, principal), oid, version)
        )

    key = spec.natural_key
    if key is not None:

        @router.put(
            f"/{key.path}/{{value}}",
            operation_id=f"{name}_upsert_by_{key.field}",
            response_model=Read,
            responses=_upserted,
            **docs.upsert_by_key_doc(spec).route(),
        )
        @idempotent
        async def upsert_by_key(
            request: Request,
            value: Annotated[str, Path(max_length=320, pattern=r"^[^\x00]+$")],
            body: Annotated[Update, Body()],
            principal: Writer,
            conn: LockingConn,
        ) -> Response:
            status, row = await service.upsert_by_key(
                conn,
                spec,
                context(request, principal),
                value,
                body.model_dump(exclude_unset=True),
            )
            return object_response(spec, row, status)

    @router.put(
        "/by-external-id/{source}/{external_id}",
        operation_id=f"{name}_upsert_by_external_id",
        response_model=Read,
        responses=_upserted,
        **docs.upsert_by_external_id_doc(spec).route(),
    )
    @idempotent
    async def upsert_by_external_id(
        request: Request,
        source: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")],
        external_id: Annotated[str, Path(max_length=255, pattern=r"^[^\x00]+$")],
        body: Annotated[Update, Body()],
        principal: Writer,
        conn: LockingConn,
    ) -> Response:
        status, row = await service.upsert_by_external_id(
            conn,
            spec,
            context(request, principal),
            source,
            external_id,
            body.model_dump(exclude_unset=True),
        )
        return object_response(spec, row, status)

    return router
