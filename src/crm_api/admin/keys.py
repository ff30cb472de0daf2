"""Creating, listing and revoking API keys (the CLI and ``/v1/api-keys`` share these)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from ..auth import hash_key, new_key, valid_scope
from ..errors import NotFound, field_error
from ..ids import uuid7
from ..pipelines.service import create_default as create_default_pipeline
from ..registry import SCOPE_RESOURCES

_COLUMNS = "id, name, prefix, scopes, created_at, revoked_at"


def check_scopes(scopes: list[str]) -> list[str]:
    for i, scope in enumerate(scopes):
        if not valid_scope(scope, SCOPE_RESOURCES):
            raise field_error(f"/scopes/{i}", f"unknown scope '{scope}'")
    return sorted(set(scopes))


async def ensure_workspace(conn: asyncpg.Connection, name: str) -> tuple[uuid.UUID, bool]:
    """The workspace's id, and whether this call created it (with its default sales pipeline)."""
    row = await conn.fetchrow(
        "INSERT INTO workspaces (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id",
        uuid7(),
        name,
    )
    if row is not None:
        await create_default_pipeline(conn, row["id"])
        return row["id"], True
    return await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", name), False


async def create_key(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, name: str, scopes: list[str]
) -> tuple[str, dict[str, Any]]:
    key, prefix = new_key()
    row = await conn.fetchrow(
        "INSERT INTO api_keys (workspace_id, id, name, prefix, key_hash, scopes) "
        f"VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
        workspace_id,
        uuid7(),
        name,
        prefix,
        hash_key(key),
        check_scopes(scopes),
    )
    return key, _api(row)


def _api(row: asyncpg.Record) -> dict[str, Any]:
    return {"object": "api_key", **dict(row)}


async def list_keys(conn: asyncpg.Connection | asyncpg.Pool, workspace_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM api_keys WHERE workspace_id = $1 ORDER BY created_at, id", workspace_id
    )
    return [_api(r) for r in rows]


async def revoke_key(conn: asyncpg.Connection, workspace_id: uuid.UUID, key_id: uuid.UUID) -> dict[str, Any]:
    # The time is a parameter: Citus refuses a clock function inside COALESCE in an UPDATE (docs/SCALING.md).
    row = await conn.fetchrow(
        f"UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3) WHERE workspace_id = $1 AND id = $2 "
        f"RETURNING {_COLUMNS}",
        workspace_id,
        key_id,
        dt.datetime.now(dt.UTC),
    )
    if row is None:
        raise NotFound(f"No API key with id {key_id}")
    return _api(row)
