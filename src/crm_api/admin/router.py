"""``/v1/api-keys``: admin-only management of a workspace's keys."""

import datetime as dt
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from ..auth import Principal, require
from ..deps import LockingConn, read_pool
from ..http import json_response, problems, secret_response
from ..idempotency import idempotent
from ..resources.schemas import ShortText, UtcDatetime, WriteModel
from ..routing import Route
from . import keys

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"], route_class=Route)
Admin = Annotated[Principal, require("admin")]


class ApiKeyCreate(WriteModel):
    name: ShortText = Field(min_length=1)
    scopes: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1, max_length=50, examples=[["contacts:read", "contacts:write"]]
    )
    expires_at: UtcDatetime | None = Field(
        default=None, description="When the key stops working (must be in the future); never when absent"
    )
    member_id: uuid.UUID | None = Field(
        default=None,
        description="The active member the key acts for: its writes' events name the member as actor "
        '(`member:<id>`), and `"me"` in `owner_id` or `assignee_id` is this member',
    )


class ApiKey(BaseModel):
    object: Literal["api_key"]
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    member_id: uuid.UUID | None = Field(description="The member the key acts for; null: none")
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    expires_at: dt.datetime | None = Field(description="From then on the key is refused (401); null: never")
    last_used_at: dt.datetime | None = Field(
        description="When the key last authenticated a request, to within a minute; null: never used"
    )


class ApiKeyWithSecret(ApiKey):
    key: str = Field(description="The key itself: shown once, never again")


class ApiKeyList(BaseModel):
    object: Literal["list"]
    data: list[ApiKey]
    has_more: bool
    next_cursor: str | None


@router.get(
    "",
    operation_id="api_keys_list",
    response_model=ApiKeyList,
    responses=problems(422),
    summary="List the workspace's API keys",
    description="Every key of the workspace, revoked ones too, without the keys themselves (their `prefix` "
    "identifies them). One page: `has_more` is always false. Needs the `admin` scope.",
)
async def list_keys(principal: Admin, request: Request) -> Response:
    conn = read_pool(request)
    data = await keys.list_keys(conn, principal.workspace_id)
    return json_response({"object": "list", "data": data, "has_more": False, "next_cursor": None})


@router.post(
    "",
    status_code=201,
    operation_id="api_keys_create",
    response_model=ApiKeyWithSecret,
    responses=problems(409, 422),
    summary="Create an API key",
    description="A key for this workspace with 1 to 50 `scopes`: `<resource>:read` or `<resource>:write`, "
    "`*` (every resource, not admin) or `admin` (an unknown scope is a 422 at `/scopes/<i>`). Answers 201 "
    "with the key in `key`: it is shown this once, only its SHA-256 is stored. Needs the `admin` scope.",
)
@idempotent
async def create_key(request: Request, body: ApiKeyCreate, principal: Admin, conn: LockingConn) -> Response:
    key, row = await keys.create_key(
        conn, principal.workspace_id, body.name, body.scopes, body.expires_at, body.member_id
    )
    return secret_response({**row, "key": key}, 201)


@router.delete(
    "/{id}",
    operation_id="api_keys_revoke",
    response_model=ApiKey,
    responses=problems(404, 409, 422),
    summary="Revoke an API key",
    description="Sets `revoked_at`: the key is refused (401) at once by this process, and by the others "
    "within `CRM_AUTH_CACHE_SECONDS` (5 s). Needs the `admin` scope.",
)
@idempotent
async def revoke_key(
    request: Request, key_id: Annotated[uuid.UUID, Path(alias="id")], principal: Admin, conn: LockingConn
) -> Response:
    row = await keys.revoke_key(conn, principal.workspace_id, key_id)
    request.app.state.key_cache.forget_key(key_id)
    return json_response(row)
