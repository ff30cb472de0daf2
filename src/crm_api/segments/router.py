"""Segments' own routes: members (list, add, remove), history, and each object's segments.

(No ``from __future__ import annotations`` here: FastAPI reads the closures' annotations at definition.)
"""

import base64
import binascii
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from .. import jsonutil
from ..auth import Principal, require
from ..deps import LockingConn, read_pool
from ..errors import Conflict, FieldError, Forbidden, InvalidCursor, NotFound
from ..http import context, json_response, problems
from ..idempotency import idempotent
from ..pagination import keyset_page
from ..resources import repository as resources
from ..resources import service
from ..resources.spec import REGISTRY, ResourceSpec
from ..routing import Route
from . import repository as repo
from .schemas import MemberIds, MemberResults, ObjectSegments, SegmentChangeList, SegmentMemberList
from .spec import SEGMENTS, TABLE_OF

Reader = Annotated[Principal, require("segments:read")]
Writer = Annotated[Principal, require("segments:write")]
SegmentId = Annotated[uuid.UUID, Path(alias="id")]
router = APIRouter(prefix="/v1/segments", tags=["segments"], route_class=Route)


def _encode(tag: str, value: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(jsonutil.dumps([tag, str(value)])).decode().rstrip("=")


def _decode(tag: str, cursor: str) -> uuid.UUID:
    try:
        found, value = jsonutil.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if found != tag:
            raise ValueError(found)
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError, binascii.Error):
        raise InvalidCursor("The cursor is not one this API issued") from None


async def _segment(conn: Any, request: Request, principal: Principal, sid: uuid.UUID) -> dict[str, Any]:
    return await service.get(conn, SEGMENTS, context(request, principal), sid)


@router.get(
    "/{id}/members",
    operation_id="segments_members",
    response_model=SegmentMemberList,
    responses=problems(404, 422),
    summary="List a segment's members",
    description="In object id order (keyset pages: pass `next_cursor` back as `cursor`). `include=object` "
    "adds each member's object under its type's name (`contact`, `company` or `deal`), read in one "
    "statement for the page. A dynamic segment's members are the live objects its filter matches, as the "
    "workers last saw them (within seconds of a change).",
)
async def list_members(
    request: Request,
    sid: SegmentId,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    include: Annotated[
        Literal["object"] | None, Query(description="`object`: add each member's object")
    ] = None,
) -> Response:
    conn = read_pool(request)
    after = _decode("members", cursor) if cursor else None
    segment = await _segment(conn, request, principal, sid)
    ws = segment["workspace_id"]
    rows = await repo.members(conn, ws, sid, after, limit)
    object_type = segment["object_type"]
    page = keyset_page(
        rows,
        limit,
        lambda r: _encode("members", r["object_id"]),
        lambda r: {"object": "segment_member", "object_type": object_type, **r},
    )
    if include == "object":
        spec = REGISTRY[TABLE_OF[object_type]]
        found = await resources.fetch_by_ids(conn, spec, ws, [m["object_id"] for m in page["data"]])
        by_id = {r["id"]: spec.to_api(r) for r in found}
        for member in page["data"]:
            member[object_type] = by_id.get(member["object_id"])
    return json_response(page)


async def _change_members(
    request: Request, sid: uuid.UUID, body: MemberIds, principal: Principal, conn: Any, adding: bool
) -> Response:
    ctx = context(request, principal)
    segment = await service.get(conn, SEGMENTS, ctx, sid)
    if segment["kind"] != "static":
        raise Conflict(
            "A dynamic segment's members follow its filter; only static segments take members",
            [FieldError("/ids", "not for a dynamic segment")],
        )
    if segment["archived_at"] is not None:
        raise Conflict("The segment is archived; restore it first")
    ids = list(dict.fromkeys(body.ids))
    await repo.lock_segment(conn, ctx.workspace_id, sid)
    if adding:
        live = await repo.live_ids(conn, ctx.workspace_id, segment["object_type"], ids)
        added, _ = await repo.change(conn, ctx, segment, {i: "added" for i in ids if i in live}, {})
        changed = set(added)
    else:
        live = set(ids)
        _, removed = await repo.change(conn, ctx, segment, {}, {i: "removed" for i in ids})
        changed = set(removed)
    results = []
    for i in body.ids:
        if i not in live:
            error = NotFound(f"No live {segment['object_type']} with id {i}", [FieldError("/ids", str(i))])
            results.append({"id": i, "status": 404, "error": error.body(ctx.request_id or "")})
        else:
            results.append({"id": i, "status": 200 if i in changed else 204})
            changed.discard(i)  # a repeated id changed once
    return json_response({"object": "segment_member_results", "results": results})


@router.post(
    "/{id}/members",
    operation_id="segments_add_members",
    response_model=MemberResults,
    responses=problems(404, 409, 422),
    summary="Add objects to a static segment",
    description="Up to 500 ids, one result each in order: 200 added (`segment.member_added`, reason "
    "`added`), 204 already a member, 404 no live object of the segment's type. 409 for a dynamic or archived "
    "segment.",
)
@idempotent
async def add_members(
    request: Request, sid: SegmentId, body: MemberIds, principal: Writer, conn: LockingConn
) -> Response:
    return await _change_members(request, sid, body, principal, conn, adding=True)


@router.delete(
    "/{id}/members",
    operation_id="segments_remove_members",
    response_model=MemberResults,
    responses=problems(404, 409, 422),
    summary="Remove objects from a static segment",
    description="Up to 500 ids, one result each in order: 200 removed (`segment.member_removed`, reason "
    "`removed`), 204 not a member. 409 for a dynamic or archived segment.",
)
@idempotent
async def remove_members(
    request: Request, sid: SegmentId, body: MemberIds, principal: Writer, conn: LockingConn
) -> Response:
    return await _change_members(request, sid, body, principal, conn, adding=False)


@router.get(
    "/{id}/history",
    operation_id="segments_history",
    response_model=SegmentChangeList,
    responses=problems(404, 422),
    summary="List a segment's membership changes",
    description="Newest first: every entry and exit with its reason (`matched`, `unmatched`, `added`, "
    "`removed`, `archived`, `merged`, `erased`); `id` is the event's. Kept as long as the segment is.",
)
async def history(
    request: Request,
    sid: SegmentId,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    conn = read_pool(request)
    before = _decode("changes", cursor) if cursor else None
    segment = await _segment(conn, request, principal, sid)
    rows = await repo.changes(conn, segment["workspace_id"], sid, before, limit)
    return json_response(
        keyset_page(
            rows, limit, lambda r: _encode("changes", r["id"]), lambda r: {"object": "segment_change", **r}
        )
    )


def object_segments_router(spec: ResourceSpec) -> APIRouter:
    """``GET /v1/<resource>/{id}/segments``: the live segments an object is in."""
    routes = APIRouter(prefix=f"/v1/{spec.url_segment}", tags=[spec.name], route_class=Route)
    ObjectReader = Annotated[Principal, require(f"{spec.name}:read")]

    @routes.get(
        "/{id}/segments",
        operation_id=f"{spec.name}_segments",
        response_model=ObjectSegments,
        responses=problems(404, 422),
        summary=f"List the segments {spec.one} is in",
        description="Live segments only, oldest first. Needs `segments:read` too.",
    )
    async def segments_of(
        request: Request, oid: Annotated[uuid.UUID, Path(alias="id")], principal: ObjectReader
    ) -> Response:
        conn = read_pool(request)
        if not principal.allows("segments:read"):
            raise Forbidden("Listing an object's segments needs segments:read")
        ctx = context(request, principal)
        await service.get(conn, spec, ctx, oid)
        rows = await repo.object_segments(conn, ctx.workspace_id, spec.object, oid)
        return json_response({"object": "list", "data": [SEGMENTS.to_api(r) for r in rows]})

    return routes
