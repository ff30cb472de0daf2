"""Timeline routes for contacts, companies and deals, built from one factory."""

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel
from typing_extensions import TypeAliasType

from ..auth import Principal, require
from ..deps import read_pool
from ..errors import field_error
from ..http import context, json_response, problems
from ..pagination import Sort, cursor_by, decode_cursor, keyset_page
from ..resources import service
from ..resources.spec import ResourceSpec
from ..routing import Route
from . import repository as repo

TimelineKind = TypeAliasType(
    "TimelineKind", Literal["activity", "stage_change", "ticket", "comment", "field_change"]
)
_ORDER = Sort("at", True)


class TimelineEntry(BaseModel):
    object: Literal["timeline_entry"]
    kind: TimelineKind
    id: uuid.UUID
    at: dt.datetime
    data: dict[str, Any]


class TimelineList(BaseModel):
    object: Literal["list"]
    data: list[TimelineEntry]
    has_more: bool
    next_cursor: str | None


def _kinds(parent: str, raw: list[str] | None) -> list[str]:
    offered = list(repo.BRANCHES[parent])
    if not raw:
        return offered
    wanted = [k.strip() for item in raw for k in item.split(",") if k.strip()]
    if not wanted:  # ?kind= or ?kind=, would select nothing (and build no query)
        raise field_error("/kind", f"name at least one kind; a {parent} timeline has {', '.join(offered)}")
    for k in wanted:
        if k not in offered:
            raise field_error("/kind", f"unknown kind '{k}'; a {parent} timeline has {', '.join(offered)}")
    return [k for k in offered if k in wanted]


def timeline_router(spec: ResourceSpec) -> APIRouter:
    router = APIRouter(prefix=f"/v1/{spec.name}", tags=[spec.name], route_class=Route)
    Reader = Annotated[Principal, require(f"{spec.name}:read")]

    @router.get(
        "/{id}/timeline",
        operation_id=f"{spec.name}_timeline",
        response_model=TimelineList,
        responses=problems(404, 422),
        summary=f"List {spec.one}'s timeline",
        description=f"What happened to the {spec.object}, newest first, one `timeline_entry` each: "
        + ", ".join(f"`{k}`" for k in repo.BRANCHES[spec.object])
        + ". `kind` selects some (repeat it or comma-separate; an unknown kind is a 422). Pass "
        "`next_cursor` back as `cursor` until `has_more` is false.",
    )
    async def timeline(
        request: Request,
        oid: Annotated[uuid.UUID, Path(alias="id")],
        principal: Reader,
        kind: Annotated[
            list[str] | None, Query(description="only these kinds (repeat or comma-separate)")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=2000)] = None,
    ) -> Response:
        conn = read_pool(request)
        ctx = context(request, principal)
        kinds = _kinds(spec.object, kind)
        after = None
        if cursor:
            at, last = decode_cursor(cursor, _ORDER)
            if not isinstance(at, dt.datetime):
                raise field_error("/cursor", "not a cursor of this list")
            after = (at, last)
        await service.get(conn, spec, ctx, oid)
        rows = await repo.page(conn, spec.object, ctx.workspace_id, oid, kinds, after, limit)
        return json_response(
            keyset_page(rows, limit, cursor_by(_ORDER), lambda r: {"object": "timeline_entry", **r})
        )

    return router
