"""Searching by custom fields: containment for equality (the GIN index), typed ranges by definition."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
from sqlalchemy import select

from crm_api.contacts.spec import CONTACTS
from crm_api.resources.custom_fields import enforce
from crm_api.resources.exprs import Params
from crm_api.resources.filters import Compiler
from crm_api.resources.query import in_workspace, live
from crm_api.sql import Compiled, table


async def define(api: httpx.AsyncClient, **body: Any) -> None:
    r = await api.post("/v1/custom-fields", json={"object_type": "contact", "label": "L", **body})
    assert r.status_code == 201, r.text


async def names(api: httpx.AsyncClient, flt: Any) -> list[str]:
    r = await api.post("/v1/contacts/search", json={"filter": flt, "sort": ["created_at"]})
    assert r.status_code == 200, r.text
    return [c["first_name"] for c in r.json()["data"]]


async def test_typed_filters(api: httpx.AsyncClient) -> None:
    await define(api, name="score", type="number")
    await define(api, name="budget", type="decimal")
    await define(api, name="renewal", type="date")
    await define(api, name="seen_at", type="datetime")
    await define(api, name="mail", type="email")
    opts = [{"value": v, "label": v} for v in ("a", "b", "c")]
    await define(api, name="tags2", type="multi_enum", options=opts)
    people = {
        "Ann": {"score": 9, "budget": "100.50", "renewal": "2026-03-01", "seen_at": "2026-01-01T10:00:00Z",
                "mail": "ann@x.com", "tags2": ["a", "b"]},
        "Bob": {"score": 10, "budget": "20", "renewal": "2026-12-31", "seen_at": "2026-01-01T09:30:00.5Z",
                "mail": "bob@x.com", "tags2": ["c"]},
    }  # fmt: skip
    for first, cf in people.items():
        r = await api.post("/v1/contacts", json={"first_name": first, "custom_fields": cf})
        assert r.status_code == 201, r.text
    # numbers compare as numbers (9 < 10), decimals as numbers though stored as strings
    assert await names(api, {"field": "custom_fields.score", "op": "gt", "value": 9}) == ["Bob"]
    assert await names(api, {"field": "custom_fields.budget", "op": "gte", "value": "99"}) == ["Ann"]
    assert await names(api, {"field": "custom_fields.budget", "op": "eq", "value": 100.5}) == ["Ann"]
    flt = {"field": "custom_fields.renewal", "op": "between", "value": ["2026-01-01", "2026-06-30"]}
    assert await names(api, flt) == ["Ann"]
    flt = {"field": "custom_fields.seen_at", "op": "lt", "value": "2026-01-01T11:00:00+01:00"}
    assert await names(api, flt) == ["Bob"]
    assert await names(api, {"field": "custom_fields.mail", "op": "eq", "value": "ANN@X.COM"}) == ["Ann"]
    assert await names(api, {"field": "custom_fields.tags2", "op": "in", "value": ["b", "c"]}) == [
        "Ann",
        "Bob",
    ]
    assert await names(api, {"field": "custom_fields.tags2", "op": "eq", "value": "c"}) == ["Bob"]
    # bad filter values are 422s naming the value
    for flt, where in [
        ({"field": "custom_fields.renewal", "op": "gt", "value": "soon"}, "/filter/value"),
        ({"field": "custom_fields.tags2", "op": "gt", "value": "a"}, "/filter/op"),
        ({"field": "custom_fields.score", "op": "in", "value": [1, "x"]}, "/filter/value/1"),
    ]:
        r = await api.post("/v1/contacts/search", json={"filter": flt})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["path"] == where


async def test_equality_uses_the_gin_index(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await define(api, name="erp_no", type="text", unique=True)
    ws = api.workspace_id  # type: ignore[attr-defined]
    await pool.execute(
        "INSERT INTO contacts (workspace_id, id, created_at, updated_at, custom_fields) "
        "SELECT $1, gen_random_uuid(), now(), now(), jsonb_build_object('erp_no', 'N-' || g) "
        "FROM generate_series(1, 5000) AS g",
        ws,
    )
    await pool.execute("ANALYZE contacts")
    assert await names(api, {"field": "custom_fields.erp_no", "op": "eq", "value": "N-42"}) == [None]
    params = Params(ws=ws)
    compiler = Compiler(CONTACTS, params)
    compiler.custom_definitions = await enforce.definitions(pool, ws, "contact")
    cond = compiler.compile({"field": "custom_fields.erp_no", "op": "in", "value": ["N-1", "N-2"]})
    conditions = [in_workspace(CONTACTS), cond, live(CONTACTS)]
    statement = Compiled(select(table("contacts").c.id).where(*(c.build() for c in conditions)))
    assert "contacts.custom_fields @>" in statement.text
    # the GIN index serves the compiled condition: asked of the condition alone, with sequential scans set
    # aside (with the workspace's conditions too, the planner may prefer the workspace's btree on a table
    # as small as the suite leaves it: PostgreSQL 18 did)
    alone = Compiled(select(table("contacts").c.id).where(cond.build()))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.fetch(f"EXPLAIN {alone.text}", *alone.args(params.values))
    assert "ix_contacts_custom_fields" in "\n".join(r[0] for r in plan)
