"""The custom field triggers run only for writes that touch custom fields (migration 0039's WHEN
conditions), and still do their work for those that do. Counted per transaction by PostgreSQL's function
statistics (``pg_stat_get_xact_function_calls``), on the writer's own connection."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from crm_api.auth import Principal
from crm_api.contacts.spec import CONTACTS
from crm_api.errors import Conflict
from crm_api.resources import service

FUNCTIONS = ("custom_field_values_sync", "custom_field_unique_check")


class _Ctx:
    def __init__(self, workspace_id: uuid.UUID) -> None:
        self.principal = Principal(workspace_id, uuid.uuid4(), frozenset({"*"}))
        self.workspace_id = workspace_id
        self.request_id = None


async def _calls(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT f, coalesce(pg_stat_get_xact_function_calls(f::regproc), 0) AS n FROM unnest($1::text[]) f",
        list(FUNCTIONS),
    )
    return {r["f"]: r["n"] for r in rows}


async def test_triggers_skip_writes_without_custom_fields(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    r = await api.post(
        "/v1/custom-fields", json={"object_type": "contact", "label": "L", "name": "erp", "type": "text"}
    )
    assert r.status_code == 201, r.text
    r = await api.post(
        "/v1/custom-fields",
        json={"object_type": "contact", "label": "U", "name": "erp_no", "type": "text", "unique": True},
    )
    assert r.status_code == 201, r.text
    ctx: Any = _Ctx(api.workspace_id)  # type: ignore[attr-defined]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL track_functions = 'pl'")
        plain = await service.create(conn, CONTACTS, ctx, {"email": "plain@x.io"})
        await service.update(conn, CONTACTS, ctx, plain["id"], {"title": "CEO"}, None)
        await service.archive(conn, CONTACTS, ctx, plain["id"], None)
        assert await _calls(conn) == dict.fromkeys(FUNCTIONS, 0)

        # a create with custom fields: both run; an update of them: both; an update of anything else: none
        held = await service.create(conn, CONTACTS, ctx, {"custom_fields": {"erp": "A", "erp_no": "N-1"}})
        assert await _calls(conn) == dict.fromkeys(FUNCTIONS, 1)
        await service.update(
            conn, CONTACTS, ctx, held["id"], {"custom_fields": {"erp": "B", "erp_no": "N-1"}}, None
        )
        assert await _calls(conn) == dict.fromkeys(FUNCTIONS, 2)
        await service.update(conn, CONTACTS, ctx, held["id"], {"title": "CTO"}, None)
        assert await _calls(conn) == dict.fromkeys(FUNCTIONS, 2)
        # archiving frees the unique value without a check; restoring checks it again
        await service.archive(conn, CONTACTS, ctx, held["id"], None)
        await service.restore(conn, CONTACTS, ctx, held["id"], None)
        assert await _calls(conn) == {"custom_field_values_sync": 2, "custom_field_unique_check": 3}
        typed = await conn.fetch(
            "SELECT field, txt FROM custom_field_values WHERE object_id = $1 ORDER BY field", held["id"]
        )
        assert [(r["field"], r["txt"]) for r in typed] == [("erp", "B"), ("erp_no", "N-1")]
        # the unique check still refuses a live duplicate
        with pytest.raises(Conflict):
            async with conn.transaction():
                await service.create(conn, CONTACTS, ctx, {"custom_fields": {"erp_no": "N-1"}})
