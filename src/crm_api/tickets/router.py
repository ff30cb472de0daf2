"""Routes tickets have beyond the shared ones: their comments."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from ..auth import Principal, require
from ..deps import LockingConn, read_pool
from ..http import context, json_response, problems
from ..idempotency import idempotent
from ..resources import query
from ..resources import service as resources
from ..resources.router import list_parameters
from ..resources.schemas import list_model
from ..routing import Route
from . import service
from .schemas import TicketComment, TicketCommentCreate
from .spec import COMMENTS, TICKETS

router = APIRouter(prefix="/v1/tickets", tags=["tickets"], route_class=Route)
Reader = Annotated[Principal, require("tickets:read")]
Writer = Annotated[Principal, require("tickets:write")]
TicketId = Annotated[uuid.UUID, Path(alias="id")]


@router.get(
    "/{id}/comments",
    operation_id="tickets_list_comments",
    response_model=list_model(TicketComment),
    responses=problems(404, 422),
    openapi_extra=list_parameters(COMMENTS),
    summary="List a ticket's comments",
    description="Newest first (`sort=created_at` for oldest first); `public` and `author_type` filter. "
    "Pass `next_cursor` back as `cursor` until `has_more` is false.",
)
async def list_comments(request: Request, oid: TicketId, principal: Reader) -> Response:
    conn = read_pool(request)
    ctx = context(request, principal)
    await resources.get(conn, TICKETS, ctx, oid)
    page = await query.list_page(conn, COMMENTS, ctx, request.query_params, extra={"ticket_id": oid})
    return json_response(page)


@router.post(
    "/{id}/comments",
    status_code=201,
    operation_id="tickets_create_comment",
    response_model=TicketComment,
    responses=problems(404, 409, 422),
    summary="Comment on a ticket",
    description="Adds a comment by an `agent` (a user of the CRM, or the API key) or by the `requester`. "
    "The first public agent comment sets the ticket's `first_responded_at`, meeting its first response "
    "target. An archived or closed ticket takes no comments (409). Emits `ticket.comment_created`.",
)
@idempotent
async def create_comment(
    request: Request, oid: TicketId, body: TicketCommentCreate, principal: Writer, conn: LockingConn
) -> Response:
    row = await service.create_comment(
        conn, context(request, principal), oid, body.model_dump(exclude_unset=True)
    )
    return json_response(COMMENTS.to_api(row), 201)
