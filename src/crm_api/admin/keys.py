"""Creating, listing and revoking API keys (the CLI and ``/v1/api-keys`` share these)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, Insert, Select, Update, func, select, update
from sqlalchemy.dialects.postgresql import insert

from .. import sql
from ..auth import hash_key, new_key, valid_scope
from ..errors import NotFound, field_error
from ..ids import uuid7
from ..pipelines.service import create_default as create_default_pipeline
from ..registry import SCOPE_RESOURCES
from ..resources import owners


def _shown() -> list[ColumnElement[Any]]:
    """What the API shows of a key (never its hash)."""
    shown = (
        *("id", "name", "prefix", "scopes", "member_id"),
        *("created_at", "revoked_at", "expires_at", "last_used_at"),
    )
    return sql.columns(shown, sql.table("api_keys"))


def _new_workspace() -> Insert:
    w = sql.table("workspaces")
    return (
        insert(w)
        .values(id=sql.param("id"), name=sql.param("name"))
        .on_conflict_do_nothing(index_elements=[w.c.name])
        .returning(w.c.id)
    )


def _workspace_by_name() -> Select[Any]:
    w = sql.table("workspaces")
    return select(w.c.id).where(w.c.name == sql.param("name"))


def _new_key() -> Insert:
    k = sql.table("api_keys")
    given = ("workspace_id", "id", "name", "prefix", "key_hash", "scopes", "expires_at", "member_id")
    values = {c: sql.param(c) for c in given}
    return insert(k).values(values).returning(*_shown())


def _keys() -> Select[Any]:
    k = sql.table("api_keys")
    return select(*_shown()).where(k.c.workspace_id == sql.param("ws")).order_by(k.c.created_at, k.c.id)


def _revoke() -> Update:
    k = sql.table("api_keys")
    return (
        update(k)
        # the time is a parameter: Citus refuses a clock function inside COALESCE in an UPDATE
        .values(revoked_at=func.coalesce(k.c.revoked_at, sql.param("at")))
        .where(k.c.workspace_id == sql.param("ws"), k.c.id == sql.param("id"))
        .returning(*_shown())
    )


_NEW_WORKSPACE = sql.Query(_new_workspace)
_WORKSPACE_BY_NAME = sql.Query(_workspace_by_name)
_NEW_KEY = sql.Query(_new_key)
_KEYS = sql.Query(_keys)
_REVOKE = sql.Query(_revoke)


def check_scopes(scopes: list[str]) -> list[str]:
    for i, scope in enumerate(scopes):
        if not valid_scope(scope, SCOPE_RESOURCES):
            raise field_error(f"/scopes/{i}", f"unknown scope '{scope}'")
    return sorted(set(scopes))


async def ensure_workspace(conn: asyncpg.Connection, name: str) -> tuple[uuid.UUID, bool]:
    """The workspace's id, and whether this call created it (with its default sales pipeline)."""
    row = await _NEW_WORKSPACE.fetchrow(conn, id=uuid7(), name=name)
    if row is not None:
        await create_default_pipeline(conn, row["id"])
        return row["id"], True
    return await _WORKSPACE_BY_NAME.fetchval(conn, name=name), False


async def create_key(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    name: str,
    scopes: list[str],
    expires_at: dt.datetime | None = None,
    member_id: uuid.UUID | None = None,
) -> tuple[str, dict[str, Any]]:
    if expires_at is not None and expires_at <= dt.datetime.now(dt.UTC):
        raise field_error("/expires_at", "must be in the future")
    if member_id is not None and not await owners.active_members(conn, workspace_id, [member_id]):
        raise field_error("/member_id", "no active member of the workspace has this id")
    key, prefix = new_key()
    row = await _NEW_KEY.fetchrow(
        conn,
        workspace_id=workspace_id,
        id=uuid7(),
        name=name,
        prefix=prefix,
        key_hash=hash_key(key),
        scopes=check_scopes(scopes),
        expires_at=expires_at,
        member_id=member_id,
    )
    return key, _api(row)


def _api(row: asyncpg.Record) -> dict[str, Any]:
    return {"object": "api_key", **dict(row)}


async def list_keys(conn: asyncpg.Connection | asyncpg.Pool, workspace_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await _KEYS.fetch(conn, ws=workspace_id)
    return [_api(r) for r in rows]


async def revoke_key(conn: asyncpg.Connection, workspace_id: uuid.UUID, key_id: uuid.UUID) -> dict[str, Any]:
    row = await _REVOKE.fetchrow(conn, ws=workspace_id, id=key_id, at=dt.datetime.now(dt.UTC))
    if row is None:
        raise NotFound(f"No API key with id {key_id}")
    return _api(row)
