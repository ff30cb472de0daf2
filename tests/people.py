"""Members for tests whose records name owners by fixed ids (an owner must be an active member)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg
import httpx


async def ensure_members(pool: asyncpg.Pool, api: httpx.AsyncClient, ids: Iterable[str | None]) -> None:
    """Active members with these ids in ``api``'s workspace (those it lacks are added)."""
    ws = api.workspace_id  # type: ignore[attr-defined]
    await pool.execute(
        "INSERT INTO members (workspace_id, id, created_at, updated_at, email, name)"
        " SELECT $1, id, now(), now(), id || '@example.com', 'Owner' FROM unnest($2::uuid[]) AS id"
        " ON CONFLICT DO NOTHING",
        ws,
        [uuid.UUID(i) for i in set(ids) if i is not None],
    )
