"""``GET /v1/events``: the pull side of the outbox, newest first or (``sort=sequence``) oldest first.

Only events whose transaction is older than every transaction that may still commit an event are shown
(``horizon.py``), so an event that commits late cannot appear behind a reader's cursor.

``GET /v1/event-types``: the catalogue (``events/types.py``) with each type's schema and a sample.
"""

import datetime as dt
import re
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import BigInteger, Select, select

from .. import jsonutil, sql
from ..auth import Principal, require
from ..deps import read_pool
from ..errors import NotFound, field_error
from ..http import json_response, problems
from ..pagination import Sort, cursor_by, decode_cursor, envelope, keyset_page
from ..routing import Route
from . import horizon
from .describe import describe

router = APIRouter(prefix="/v1/events", tags=["events"], route_class=Route)
types_router = APIRouter(prefix="/v1/event-types", tags=["events"], route_class=Route)
Reader = Annotated[Principal, require("events:read")]
_TYPE = re.compile(r"^(\*|[a-z_]+\.(\*|[a-z_]+))$")
_COLUMNS = ("id", "type", "object_type", "object_id", "sequence", "created_at", "actor", "request_id", "data")
_PAGES = sql.Shapes(256)


def _page(
    type_op: str | None, by_object: bool, after: bool, cursor: bool, desc: bool, limit: int
) -> Select[Any]:
    """A page of the feed; which conditions it has is its shape, their values are parameters."""
    e = sql.table("events")
    where = [e.c.workspace_id == sql.param("ws"), e.c.sequence <= sql.param("bound", BigInteger)]
    if type_op == "prefix":
        where.append(e.c.type.like(sql.param("type")))
    elif type_op == "eq":
        where.append(e.c.type == sql.param("type"))
    if by_object:
        where.append(e.c.object_id == sql.param("object_id"))
    if after:
        where.append(e.c.sequence > sql.param("after"))
    if cursor:
        where.append(e.c.sequence.op("<" if desc else ">")(sql.param("cursor", BigInteger)))
    order = e.c.sequence.desc() if desc else e.c.sequence.asc()
    return select(*sql.columns(_COLUMNS, e)).where(*where).order_by(order).limit(limit + 1)


def _one() -> Select[Any]:
    e = sql.table("events")
    return select(*sql.columns(_COLUMNS, e)).where(
        e.c.workspace_id == sql.param("ws"), e.c.id == sql.param("id")
    )


_ONE = sql.Query(_one)


class EventData(BaseModel):
    object: dict[str, Any]
    previous: dict[str, Any]


class Event(BaseModel):
    object: Literal["event"]
    id: uuid.UUID
    type: str
    object_type: str
    object_id: uuid.UUID
    sequence: int
    created_at: dt.datetime
    actor: str
    request_id: str | None
    data: EventData


class EventList(BaseModel):
    object: Literal["list"]
    data: list[Event]
    has_more: bool
    next_cursor: str | None


def _api(row: Any) -> dict[str, Any]:
    return {"object": "event", **dict(row)}


@router.get(
    "",
    operation_id="events_list",
    response_model=EventList,
    responses=problems(422),
    summary="List events, the feed of every change",
    description="Each committed change's events: the object after the change in `data.object`, the old "
    "values of what changed in `data.previous`. Newest first, or oldest first with `sort=sequence`. "
    "Only settled events are shown (none can appear later behind a reader's position), so "
    "`sort=sequence&after=<last sequence seen>` follows the feed safely. Filters: `type` (exact, "
    "`<object>.*` or `*`), `object_id`, `after`. Kept `CRM_EVENT_RETENTION_DAYS` (30 days).",
)
async def list_events(
    principal: Reader,
    request: Request,
    type: Annotated[str | None, Query(max_length=100, description="contact.created, contact.* or *")] = None,
    object_id: uuid.UUID | None = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="only events after this sequence")
    ] = None,
    sort: Literal["sequence", "-sequence"] = "-sequence",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    conn = read_pool(request)
    order = Sort("sequence", sort.startswith("-"))
    params: dict[str, Any] = {"ws": principal.workspace_id}
    type_op = None
    if type is not None and type != "*":
        if not _TYPE.match(type):
            raise field_error("/type", "expected an event type such as contact.created or contact.*")
        type_op = "prefix" if type.endswith(".*") else "eq"
        params["type"] = type[:-1] + "%" if type_op == "prefix" else type
    if object_id is not None:
        params["object_id"] = object_id
    if after is not None:
        params["after"] = after
    if cursor:
        value, _ = decode_cursor(cursor, order)
        if not isinstance(value, int):
            raise field_error("/cursor", "not a cursor of this list")
        params["cursor"] = value
    shape = (type_op, object_id is not None, after is not None, bool(cursor), order.descending, limit)
    statement = _PAGES.get(shape, lambda: _page(*shape))
    params["bound"] = await horizon.bound(conn)  # first, and in a statement of its own: see horizon.py
    rows = await statement.fetch(conn, **params)
    return json_response(keyset_page(rows, limit, cursor_by(order), _api))


@router.get(
    "/{id}",
    operation_id="events_get",
    response_model=Event,
    responses=problems(404, 422),
    summary="Get an event",
    description="One event of the workspace, as the feed lists it and a webhook delivers it.",
)
async def get_event(
    eid: Annotated[uuid.UUID, Path(alias="id")], principal: Reader, request: Request
) -> Response:
    conn = read_pool(request)
    row = await _ONE.fetchrow(conn, ws=principal.workspace_id, id=eid)
    if row is None:
        raise NotFound(f"No event with id {eid}")
    return json_response(_api(row))


class EventType(BaseModel):
    object: Literal["event_type"]
    type: str = Field(examples=["deal.won"])
    object_type: str = Field(description="the event's object_type: what data.object is")
    description: str
    schema_: dict[str, Any] = Field(
        alias="schema", description="JSON Schema of data.object (referenced schemas under $defs)"
    )
    sample: dict[str, Any] = Field(description="a whole event of this type, as a webhook delivers it")


class EventTypeList(BaseModel):
    object: Literal["list"]
    data: list[EventType]
    has_more: bool
    next_cursor: str | None


@types_router.get(
    "",
    operation_id="event_types_list",
    response_model=EventTypeList,
    responses=problems(422),
    summary="List the event types, with the schema of their object and a sample",
    description="Every type the feed and webhooks carry; subscriptions accept these, `<prefix>.*` and `*`.",
)
async def list_event_types(request: Request, principal: Reader) -> Response:
    app = request.app
    body: bytes | None = getattr(app.state, "event_types", None)
    if body is None:  # built once per app, from its OpenAPI document
        components = app.openapi()["components"]["schemas"]
        body = jsonutil.dumps(envelope(describe(components), False, None))
        app.state.event_types = body
    return Response(body, media_type="application/json")
