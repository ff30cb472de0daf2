"""``GET /v1/events``: the pull side of the outbox, newest first or (``sort=sequence``) oldest first.

Only events whose transaction is older than every transaction that may still commit an event are shown
(``horizon.py``), so an event that commits late cannot appear behind a reader's cursor.

``GET /v1/event-types``: the catalogue (``events/types.py``) with each type's schema and a sample.
"""

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import Select, select

from .. import jsonutil, sql
from ..auth import Principal, require
from ..deps import read_pool
from ..errors import NotFound, field_error
from ..http import json_response, problems
from ..pagination import Sort, cursor_by, decode_cursor, envelope, keyset_page
from ..routing import Route
from . import horizon
from .describe import describe
from .feed import COLUMNS, PAGES, page_statement, to_api, type_filter
from .stream import EventStream, frames, hub_of

router = APIRouter(prefix="/v1/events", tags=["events"], route_class=Route)
types_router = APIRouter(prefix="/v1/event-types", tags=["events"], route_class=Route)
Reader = Annotated[Principal, require("events:read")]


def _one() -> Select[Any]:
    e = sql.table("events")
    return select(*sql.columns(COLUMNS, e)).where(
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
    type_op = type_filter(type, params)
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
    statement = PAGES.get(shape, lambda: page_statement(*shape))
    params["bound"] = await horizon.bound(conn)  # first, and in a statement of its own: see horizon.py
    rows = await statement.fetch(conn, **params)
    return json_response(keyset_page(rows, limit, cursor_by(order), to_api))


_STREAM_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: `id:` the event's sequence, `event:` its type, `data:` the event "
        "as the feed lists it; comment lines (`: keep-alive`) while idle",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


# before /{id}, which would take "stream" for an id
@router.get(
    "/stream",
    operation_id="events_stream",
    status_code=200,
    response_class=EventStream,
    responses={**_STREAM_OK, **problems(422)},
    summary="Stream events as they commit (Server-Sent Events)",
    description="The feed, live: each settled event of the workspace as soon as it commits, oldest first, "
    "filtered by `type` (exact, `<object>.*` or `*`) and `object_id`. `id:` is the event's `sequence`: a "
    "client reconnecting with `Last-Event-ID` (as `EventSource` does) gets every event after it and no "
    "duplicate, across server restarts too; without it the stream starts after `after`, else now. "
    "Comments keep an idle stream open through proxies. At most `CRM_STREAMS_PER_KEY` open streams per "
    "key and API process (429 past it).",
)
async def stream_events(
    request: Request,
    principal: Reader,
    type: Annotated[str | None, Query(max_length=100, description="contact.created, contact.* or *")] = None,
    object_id: uuid.UUID | None = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=2**63 - 1, description="start after this sequence (Last-Event-ID wins when sent)"),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="The `id:` of the last event received: the stream resumes after it",
        ),
    ] = None,
) -> Response:
    conn = read_pool(request)
    params: dict[str, Any] = {}
    type_op = type_filter(type, params)
    if object_id is not None:
        params["object_id"] = object_id
    if last_event_id is not None and last_event_id.strip():
        value = last_event_id.strip()
        if not value.isdigit() or len(value) > 18:
            raise field_error("/headers/Last-Event-ID", "expected the id of an event of this stream")
        after = int(value)
    hub = hub_of(request.app)
    sub = hub.open(principal)
    try:
        # listening, and the workspace marked as streamed (so its writes notify), before the start is read,
        # and all before the answer: what commits once the client sees the stream open is sent
        await hub.listening()
        await hub.register([principal.workspace_id])
        if after is None:
            # the bound: whatever commits from now on is above it (horizon.py), and everything at or below it
            # is history the client did not ask for
            after = await horizon.bound(conn)
    except BaseException:
        hub.close(sub)
        raise
    settings = request.app.state.settings
    body = frames(hub, sub, after, type_op, params, settings.stream_heartbeat_s)
    return EventStream(body, lambda: hub.close(sub))


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
    return json_response(to_api(row))


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
