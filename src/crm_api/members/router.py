"""Routes members have beyond the shared ones: what a member owns, and moving it to another member."""

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from ..auth import Principal, require
from ..deps import LockingConn, read_pool
from ..http import context, json_response, problems
from ..idempotency import idempotent
from ..resources.schemas import WriteModel
from ..routing import Route
from . import ownership

router = APIRouter(prefix="/v1/members", tags=["members"], route_class=Route)
Reader = Annotated[Principal, require("members:read")]
Writer = Annotated[Principal, require("members:write")]
MemberId = Annotated[uuid.UUID, Path(alias="id")]


class OwnedCounts(BaseModel):
    contacts: int
    companies: int
    deals: int
    activities: int
    tickets: int = Field(description="Tickets whose `assignee_id` is the member")


class MemberOwnership(BaseModel):
    object: Literal["member_ownership"]
    member_id: uuid.UUID
    counts: OwnedCounts
    total: int


class ReassignRequest(WriteModel):
    to_member_id: uuid.UUID = Field(description="An active member of the workspace, other than this one")


class MemberReassignment(BaseModel):
    object: Literal["member_reassignment"]
    member_id: uuid.UUID
    to_member_id: uuid.UUID
    moved: OwnedCounts
    total: int


@router.get(
    "/{id}/ownership",
    operation_id="members_ownership",
    response_model=MemberOwnership,
    responses=problems(404, 422),
    summary="Count what a member owns",
    description="The live (not archived) contacts, companies, deals and activities whose `owner_id` is "
    "the member and the tickets whose `assignee_id` is, per object type. Archived and inactive members "
    "are counted too. Needs `members:read`.",
)
async def get_ownership(request: Request, member_id: MemberId, principal: Reader) -> Response:
    body = await ownership.counts(read_pool(request), context(request, principal), member_id)
    return json_response(body)


@router.post(
    "/{id}/reassign",
    operation_id="members_reassign",
    response_model=MemberReassignment,
    responses=problems(404, 409, 422),
    summary="Move everything a member owns to another member",
    description="Every live record the member owns (as `GET .../ownership` counts them) gets "
    "`to_member_id` as its owner (or assignee), in chunks of 500 through the write path: each record "
    "gets a new version and its `<object>.updated` event. All or nothing, in one transaction. "
    "`to_member_id` must be an active member (422 naming it). Needs `members:write`.",
)
@idempotent
async def reassign(
    request: Request, body: ReassignRequest, member_id: MemberId, principal: Writer, conn: LockingConn
) -> Response:
    done = await ownership.reassign(conn, context(request, principal), member_id, body.to_member_id)
    return json_response(done)
