"""``GET /v1/<resource>/{id}/history`` for contacts, companies, deals, tickets and activities.

(No ``from __future__ import annotations`` here: FastAPI reads the closures' annotations at definition.)
"""

import base64
import binascii
import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from .. import jsonutil
from ..auth import Principal, require
from ..deps import read_pool
from ..errors import InvalidCursor, field_error
from ..http import context, json_response, problems
from ..pagination import keyset_page
from ..resources import service
from ..resources.schemas import text_problem
from ..resources.spec import ResourceSpec
from ..routing import Route
from . import repository as repo


class FieldChange(BaseModel):
    object: Literal["field_change"]
    field: str
    old_value: Any = Field(description="null on the event that created the object")
    new_value: Any
    at: dt.datetime
    actor: str = Field(
        description="api_key:<id>, member:<id> for a key acting for a member, "
        "or system:<job> for the service's own jobs"
    )
    request_id: str | None
    event_id: uuid.UUID
    event_type: str
    sequence: int


class FieldChangeList(BaseModel):
    object: Literal["list"]
    data: list[FieldChange]
    has_more: bool
    next_cursor: str | None


def _encode(sequence: int, field: str) -> str:
    raw = jsonutil.dumps(["history", sequence, field])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[int, str]:
    try:
        tag, sequence, field = jsonutil.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, binascii.Error):
        raise InvalidCursor("The cursor is not one this API issued") from None
    if (
        tag != "history"
        or not isinstance(sequence, int)
        or not -(2**63) <= sequence < 2**63
        or not isinstance(field, str)
        or text_problem(field)
    ):
        raise InvalidCursor("The cursor is not one of a history list")
    return sequence, field


def history_router(spec: ResourceSpec) -> APIRouter:
    router = APIRouter(prefix=f"/v1/{spec.url_segment}", tags=[spec.name], route_class=Route)
    Reader = Annotated[Principal, require(f"{spec.name}:read")]
    known = (*spec.field_names, "archived_at")

    @router.get(
        "/{id}/history",
        operation_id=f"{spec.name}_history",
        response_model=FieldChangeList,
        responses=problems(404, 422),
        summary=f"List the changes to {spec.one}'s fields",
        description=(
            "Newest first, one entry per field per change: old and new value, when, the API key and "
            "request, and the event. The create lists the fields it set, with old_value null. `field` "
            "selects one field. Built from the event log, so it reaches back CRM_EVENT_RETENTION_DAYS "
            "(30 days). Pass `next_cursor` back as `cursor` until `has_more` is false."
        ),
    )
    async def history(
        request: Request,
        oid: Annotated[uuid.UUID, Path(alias="id")],
        principal: Reader,
        field: Annotated[str | None, Query(max_length=100, description="only changes to this field")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=2000)] = None,
    ) -> Response:
        conn = read_pool(request)
        if field is not None and field not in known:
            raise field_error("/query/field", f"a {spec.object} has no field '{field}'")
        after = _decode(cursor) if cursor else None
        ctx = context(request, principal)
        await service.get(conn, spec, ctx, oid)  # 404 unless it is in the caller's workspace
        rows = await repo.page(conn, spec.object, ctx.workspace_id, oid, field, after, limit)
        return json_response(
            keyset_page(
                rows,
                limit,
                lambda r: _encode(r["sequence"], r["field"]),
                lambda r: {"object": "field_change", **r},
            )
        )

    return router
