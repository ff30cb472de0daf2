"""Browser tokens: short-lived credentials a browser may hold instead of an API key.

A team's server mints one with its key (``POST /v1/browser-tokens``, ``admin/browser_tokens.py``): a subset of
the key's scopes, a list of origins, at most an hour. The token is its claims sealed with the master key
(``masterkey.py``, Fernet: encrypted and authenticated), so nothing is stored and nothing can be forged or
read without the key: ``crmbt_`` then the sealed ``{"w": workspace, "k": parent key, "s": scopes,
"o": origins, "e": expiry}``. Checking one (``auth.authenticate``, once per process per token, then cached
like a key): it opens, its parent key is neither revoked nor expired (so it dies with its key: at once in
the process that revokes the key, within ``CRM_AUTH_CACHE_SECONDS`` in the others), and on every request
its expiry and the request's ``Origin``, which a browser sets and a page cannot.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select

from . import sql
from .masterkey import Keyring, MasterKeyError

PREFIX = "crmbt_"
IN_QUERY = frozenset({"/v1/events/stream"})
"""Paths that take a browser token as ``access_token`` in the query (``EventSource`` sends no headers)."""
MAX_TTL_SECONDS = 3600


@dataclass(frozen=True)
class Claims:
    workspace_id: uuid.UUID
    key_id: uuid.UUID
    scopes: frozenset[str]
    origins: frozenset[str]
    expires: float
    """Unix time: the token's expiry, or its parent key's when that comes first."""


def mint(
    keyring: Keyring,
    workspace_id: uuid.UUID,
    key_id: uuid.UUID,
    scopes: list[str],
    origins: list[str],
    expires_at: dt.datetime,
) -> str:
    claims = {
        "w": str(workspace_id),
        "k": str(key_id),
        "s": scopes,
        "o": origins,
        "e": expires_at.timestamp(),
    }
    return PREFIX + keyring.seal(json.dumps(claims, separators=(",", ":")))


def _parent() -> Select[Any]:
    k = sql.table("api_keys")
    return select(k.c.expires_at).where(
        k.c.workspace_id == sql.param("ws"), k.c.id == sql.param("id"), k.c.revoked_at.is_(None)
    )


_PARENT = sql.Query(_parent)


async def verify(app: Any, token: str) -> Claims | None:
    """The token's claims when it opens and its parent key is live (its expiry is checked by the caller,
    on every request); None otherwise."""
    try:
        claims = json.loads(app.state.keyring.open(token.removeprefix(PREFIX)))
        workspace_id, key_id = uuid.UUID(claims["w"]), uuid.UUID(claims["k"])
    except (MasterKeyError, ValueError, KeyError, TypeError):
        return None
    parent = await _PARENT.fetchrow(app.state.db.pool, ws=workspace_id, id=key_id)
    if parent is None:
        return None
    expires = float(claims["e"])
    if parent["expires_at"] is not None:
        expires = min(expires, parent["expires_at"].timestamp())
    return Claims(workspace_id, key_id, frozenset(claims["s"]), frozenset(claims["o"]), expires)
