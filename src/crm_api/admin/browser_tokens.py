"""``POST /v1/browser-tokens``: a team's server mints a short-lived token for a browser (``browser_tokens.py``
in the kernel says what one is and how it is checked).

(No ``from __future__ import annotations``: FastAPI and the route checks read the route's annotations.)
"""

import datetime as dt
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from .. import browser_tokens
from ..auth import Principal, require, valid_scope
from ..deps import WriteConn
from ..errors import FieldError, Forbidden, Unprocessable
from ..http import problems, secret_response
from ..idempotency import idempotent
from ..registry import SCOPE_RESOURCES
from ..resources.schemas import WriteModel
from ..routing import Route

router = APIRouter(prefix="/v1/browser-tokens", tags=["api-keys"], route_class=Route)
Minter = Annotated[Principal, require("browser_tokens:write")]
# what a browser may never hold: key management, and minting more tokens
_NEVER = ("admin", "browser_tokens:read", "browser_tokens:write")

Origin = Annotated[
    str,
    Field(
        max_length=253,
        pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$",
        examples=["https://app.example.com"],
        description="An origin as a browser sends it: scheme, host and port, no path",
    ),
]


class BrowserTokenCreate(WriteModel):
    scopes: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1,
        max_length=50,
        examples=[["contacts:read", "events:read"]],
        description="Scopes the calling key holds; not `admin`, not `browser_tokens:*`",
    )
    origins: list[Origin] = Field(min_length=1, max_length=20)
    ttl_seconds: int = Field(600, ge=1, le=browser_tokens.MAX_TTL_SECONDS, description="Default: 600")


class BrowserToken(BaseModel):
    object: Literal["browser_token"]
    token: str = Field(
        description="Send as `Authorization: Bearer <token>`, or as `access_token` to the stream"
    )
    api_key_id: uuid.UUID = Field(description="The key that minted it: the token dies with it")
    scopes: list[str]
    origins: list[str]
    expires_at: dt.datetime


# 200, not 201: nothing is stored, there is no resource to locate (the token is its own proof)
@router.post(
    "",
    operation_id="browser_tokens_create",
    response_model=BrowserToken,
    responses=problems(409, 422),
    summary="Mint a browser token",
    description="For a team's server to hand a browser instead of a key: a token with some of the calling "
    "key's `scopes` (not `admin`, not `browser_tokens:*`), valid only on requests whose `Origin` is one of "
    "`origins`, for `ttl_seconds` (at most 3,600), and no longer than its key. A scope the key lacks is a "
    "422 at `/scopes/<i>`. A browser token cannot mint tokens. Needs `browser_tokens:write`.",
)
@idempotent
async def create_token(
    request: Request, body: BrowserTokenCreate, principal: Minter, conn: WriteConn
) -> Response:
    if principal.origins is not None:
        raise Forbidden("A browser token cannot mint browser tokens")
    problems_found = []
    for i, scope in enumerate(body.scopes):
        if not valid_scope(scope, SCOPE_RESOURCES) or scope in _NEVER:
            problems_found.append(FieldError(f"/scopes/{i}", f"'{scope}' cannot be given to a browser"))
        elif not principal.allows(scope):
            problems_found.append(FieldError(f"/scopes/{i}", f"the calling key lacks '{scope}'"))
    if problems_found:
        raise Unprocessable("Some scopes cannot be given to this token", problems_found)
    scopes = sorted(set(body.scopes))
    origins = sorted({o.lower() for o in body.origins})
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=body.ttl_seconds)
    if principal.expires is not None:
        expires_at = min(expires_at, dt.datetime.fromtimestamp(principal.expires, dt.UTC))
    token = browser_tokens.mint(
        request.app.state.keyring, principal.workspace_id, principal.key_id, scopes, origins, expires_at
    )
    body_out = {
        "object": "browser_token",
        "token": token,
        "api_key_id": principal.key_id,
        "scopes": scopes,
        "origins": origins,
        "expires_at": expires_at,
    }
    return secret_response(body_out)
