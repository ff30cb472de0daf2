"""API keys -> Principal(workspace_id, key_id, scopes), with a short in-process cache; and Context, the
principal with the request it acts in, which every service takes.

A browser token (``browser_tokens.py``) stands for its parent key, with fewer scopes, from its origins only.
Keys look like ``crm_<prefix>_<secret>``; only a SHA-256 of the whole key is stored (keys are 32 random
bytes, so a slow hash buys nothing). The cache is what keeps the key lookup off every request's path. A
refused key counts against its client address, and an address over its budget of failures gets 429 without
a lookup (ratelimit.py); every accepted request counts against its key's and its workspace's quotas.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from sqlalchemy import Select, select

from . import browser_tokens, sql
from .errors import Forbidden, Unauthorized
from .ratelimit import RateLimits

ACTIONS = ("read", "write")


@dataclass(frozen=True, slots=True)
class Principal:
    workspace_id: uuid.UUID
    key_id: uuid.UUID
    scopes: frozenset[str]
    expires: float | None = None
    """The key's ``expires_at`` as a Unix time, checked on every request (a cached key expires on time)."""
    origins: frozenset[str] | None = None
    """A browser token's origins (``browser_tokens.py``): only requests from one of them; None for a key."""
    member_id: uuid.UUID | None = None
    """The member the key acts for: the actor of its writes, and ``owner_id: "me"``."""

    @property
    def actor(self) -> str:
        if self.member_id is not None:
            return f"member:{self.member_id}"
        return f"api_key:{self.key_id}"

    def allows(self, scope: str) -> bool:
        """``*`` grants every resource scope; only ``admin`` grants ``admin`` (and everything else)."""
        if scope in self.scopes or "admin" in self.scopes:
            return True
        return scope != "admin" and "*" in self.scopes


@dataclass(frozen=True, slots=True)
class _SystemPrincipal:
    actor: str


@dataclass(slots=True)
class SystemContext:
    """A context for writes no API key asked for (a worker's, a new workspace's): it stands where a
    ``Context`` does, and only its workspace, request id and the actor name in its events are read."""

    workspace_id: uuid.UUID
    actor: str
    request_id: str | None = None

    @property
    def principal(self) -> Any:
        return _SystemPrincipal(self.actor)


@dataclass(slots=True)
class Context:
    """Who is writing, and the request to credit in the event log."""

    principal: Principal
    request_id: str | None

    @property
    def workspace_id(self) -> uuid.UUID:
        return self.principal.workspace_id


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its display prefix."""
    prefix = secrets.token_hex(4)
    return f"crm_{prefix}_{secrets.token_urlsafe(32)}", prefix


def valid_scope(scope: str, resources: Collection[str]) -> bool:
    """``*``, ``admin`` or ``<resource>:read|write`` for one of ``resources`` (``registry.SCOPE_RESOURCES``:
    the resources the app serves)."""
    if scope in ("*", "admin"):
        return True
    resource, _, action = scope.partition(":")
    return resource in resources and action in ACTIONS


class KeyCache:
    """Verified keys for ``ttl`` seconds, and refused ones for ``UNKNOWN_TTL``: a refused key never becomes
    valid (keys are random, and revocation is final), so repeating one costs no database lookup."""

    UNKNOWN_TTL = 60.0

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._unknown: dict[str, float] = {}

    def get(self, key_hash: str) -> Principal | None:
        hit = self._entries.get(key_hash)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key_hash: str, principal: Principal) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key_hash] = (time.monotonic() + self.ttl, principal)

    def is_unknown(self, key_hash: str) -> bool:
        until = self._unknown.get(key_hash)
        return until is not None and until >= time.monotonic()

    def put_unknown(self, key_hash: str) -> None:
        if len(self._unknown) > 10_000:  # apart from the verified keys, so a flood of guesses spares those
            self._unknown.clear()
        self._unknown[key_hash] = time.monotonic() + self.UNKNOWN_TTL

    def forget_key(self, key_id: uuid.UUID) -> None:
        for h, (_, p) in list(self._entries.items()):
            if p.key_id == key_id:
                del self._entries[h]


def _lookup() -> Select[Any]:
    k = sql.table("api_keys")
    return select(k.c.workspace_id, k.c.id, k.c.scopes, k.c.expires_at, k.c.member_id).where(
        k.c.key_hash == sql.param("key_hash"), k.c.revoked_at.is_(None)
    )


_LOOKUP = sql.Query(_lookup)


def _principal(row: Any) -> Principal:
    expires = row["expires_at"].timestamp() if row["expires_at"] is not None else None
    return Principal(
        row["workspace_id"], row["id"], frozenset(row["scopes"]), expires, member_id=row["member_id"]
    )


async def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header and request.url.path in browser_tokens.IN_QUERY:
        # EventSource sends no headers: the stream takes a browser token (never an API key) in the query
        scheme, token = "bearer", request.query_params.get("access_token", "")
        if not token.startswith(browser_tokens.PREFIX):
            raise Unauthorized("Send a browser token as 'access_token', or a key in the Authorization header")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send the API key as 'Authorization: Bearer <key>'")
    key_hash = hash_key(token.strip())
    cache: KeyCache = request.app.state.key_cache
    limits: RateLimits = request.app.state.rate_limits
    state = request.scope.setdefault("state", {})
    principal = cache.get(key_hash)
    if principal is None:
        # a key not known to be good: its client address must have failures left to spend
        address = request.client.host if request.client else ""
        await limits.before_lookup(state, address)
        found: Principal | None = None
        if token.strip().startswith(browser_tokens.PREFIX):
            if not cache.is_unknown(key_hash):
                claims = await browser_tokens.verify(request.app, token.strip())
                if claims is not None:
                    found = Principal(
                        claims.workspace_id, claims.key_id, claims.scopes, claims.expires, claims.origins
                    )
        else:
            row = None
            if not cache.is_unknown(key_hash):
                row = await _LOOKUP.fetchrow(request.app.state.db.pool, key_hash=key_hash)
            found = _principal(row) if row is not None else None
        if found is None:
            cache.put_unknown(key_hash)
            await limits.failed(state, address)
            raise Unauthorized("Unknown or revoked API key")
        principal = found
        cache.put(key_hash, principal)
    if principal.expires is not None and principal.expires <= time.time():
        raise Unauthorized("This API key has expired")
    if principal.origins is not None and request.headers.get("origin") not in principal.origins:
        raise Unauthorized("This browser token is not valid from this origin")
    request.state.principal = principal
    request.app.state.key_use.note(principal)
    await limits.admit(state, principal.key_id, principal.workspace_id)
    return principal


async def authorize(request: Request, scope: str) -> Principal:
    """The request's principal, which must hold ``scope`` (what ``require`` gives a route)."""
    principal = await authenticate(request)
    if not principal.allows(scope):
        raise Forbidden(f"This API key lacks the '{scope}' scope")
    return principal


def require(scope: str) -> Any:
    # authenticate is called here rather than declared as a sub-dependency: each dependency FastAPI solves
    # costs ~30 us of CPU per request (measured), and every route has this one
    async def dependency(request: Request) -> Principal:
        return await authorize(request, scope)

    dependency.scope = scope  # type: ignore[attr-defined]  # so a test can walk every route's scope
    return Depends(dependency)
