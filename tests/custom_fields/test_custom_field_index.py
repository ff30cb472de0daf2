"""Range filters and sorts on custom fields, served by ``custom_field_values`` (migration 0011)."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import random
import uuid
from collections.abc import Callable
from decimal import Decimal as Dec
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import select

from crm_api.contacts.spec import CONTACTS
from crm_api.resources.custom_fields import enforce, sorting
from crm_api.resources.exprs import Params
from crm_api.resources.filters import Compiler
from crm_api.resources.query import in_workspace, live
from crm_api.sql import Compiled, table

contacts = table("contacts")

TITLE = {"contact": "first_name", "company": "name", "deal": "name", "ticket": "subject"}
MakeClient = Any
PATH = {"contact": "contacts", "company": "companies", "deal": "deals", "ticket": "tickets"}
LONG = "p" * 500  # the indexed prefix is 500 characters: these differ only after it


async def define(api: httpx.AsyncClient, object_type: str = "contact", **body: Any) -> dict[str, Any]:
    r = await api.post("/v1/custom-fields", json={"object_type": object_type, "label": "L", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def create(api: httpx.AsyncClient, object_type: str, title: str, cf: dict[str, Any]) -> dict[str, Any]:
    r = await api.post(f"/v1/{PATH[object_type]}", json={TITLE[object_type]: title, "custom_fields": cf})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def search_ids(api: httpx.AsyncClient, flt: Any, path: str = "contacts", **extra: Any) -> set[str]:
    r = await api.post(f"/v1/{path}/search", json={"filter": flt, "limit": 200, **extra})
    assert r.status_code == 200, r.text
    assert not r.json()["has_more"]
    return {c["id"] for c in r.json()["data"]}


async def walk(api: httpx.AsyncClient, path: str, sort: str, via_search: bool, limit: int = 4) -> list[str]:
    """Every page of a sorted list, following the cursors."""
    ids: list[str] = []
    cursor = None
    for _ in range(100):
        if via_search:
            body: dict[str, Any] = {"sort": [sort], "limit": limit}
            if cursor:
                body["cursor"] = cursor
            r = await api.post(f"/v1/{path}/search", json=body)
        else:
            query = {"sort": sort, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
            r = await api.get(f"/v1/{path}", params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["data"]) <= limit
        ids += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return ids
    raise AssertionError("too many pages")


def stamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


FIELDS: dict[str, tuple[dict[str, Any], Callable[[random.Random], Any], Callable[[Any], Any]]] = {
    # name: (definition, random stored value, Python key that orders like the index)
    "score": ({"type": "number"}, lambda r: r.choice([-3, 0, 2.5, 7, 10, 10, 1e6]), lambda v: Dec(str(v))),
    "budget": (
        {"type": "decimal"},
        lambda r: r.choice(["0.1", "9", "10.25", "-4", "100"]),
        lambda v: Dec(str(v)),
    ),
    "renewal": ({"type": "date"}, lambda r: f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}", str),
    "seen_at": (
        {"type": "datetime"},
        lambda r: f"2026-0{r.randint(1, 3)}-0{r.randint(1, 9)}T{r.randint(10, 23)}:00:0{r.randint(0, 9)}Z",
        stamp,
    ),
    "code": ({"type": "text"}, lambda r: r.choice(["Zeta", "alpha", "Ærø", "beta", LONG, LONG + "b"]), str),
    "tier": (
        {"type": "enum", "options": [{"value": v, "label": v} for v in ("gold", "silver", "bronze")]},
        lambda r: r.choice(["gold", "silver", "bronze"]),
        str,
    ),
    "mail": ({"type": "email"}, lambda r: f"{r.choice('abcz')}@x.com", str),
    "site": ({"type": "url"}, lambda r: f"https://{r.choice('qrs')}.example/{r.randint(0, 9)}", str),
}
RANGES = {
    "score": [("gt", 2.5), ("lte", 10), ("between", [0, 7])],
    "budget": [("gte", "9.0"), ("lt", 10), ("between", ["-4", "10.25"])],
    "renewal": [("gt", "2026-06-15"), ("between", ["2026-02-01", "2026-03-31"])],
    "seen_at": [("lt", "2026-02-05T16:00:00+01:00"), ("gte", "2026-03-01T00:00:00Z")],
    "code": [("gt", "Zeta"), ("lt", "beta"), ("gt", LONG), ("gte", LONG + "b"), ("between", ["B", "b"])],
    "tier": [("lt", "gold")],
    "mail": [("gte", "B@X.COM")],
    "site": [("lt", "https://r.example/5")],
}


def holds(op: str, have: Any, want: Any) -> bool:
    if op == "between":
        return bool(want[0] <= have <= want[1])
    return bool({"lt": have < want, "lte": have <= want, "gt": have > want, "gte": have >= want}[op])


async def test_range_filters_of_every_indexed_type(api: httpx.AsyncClient) -> None:
    for name, (definition, _, _) in FIELDS.items():
        await define(api, name=name, **definition)
    rng = random.Random(5)
    stored: dict[str, dict[str, Any]] = {}
    for i in range(40):
        cf = {name: make(rng) for name, (_, make, _) in FIELDS.items() if rng.random() < 0.8}
        stored[(await create(api, "contact", f"c{i}", cf))["id"]] = cf
    for name, cases in RANGES.items():
        key = FIELDS[name][2]

        def bound(v: Any, name: str = name, key: Callable[[Any], Any] = key) -> Any:
            return key(v.lower() if name == "mail" else v)  # emails are stored lower-cased

        for op, value in cases:
            want = [bound(v) for v in value] if op == "between" else bound(value)
            expected = {i for i, cf in stored.items() if name in cf and holds(op, key(cf[name]), want)}
            flt = {"field": f"custom_fields.{name}", "op": op, "value": value}
            assert await search_ids(api, flt) == expected, (name, op, value)
            assert expected, (name, op)  # each case selects something


@pytest.mark.parametrize("object_type", ["contact", "company", "deal", "ticket"])
async def test_sorted_pages_equal_a_full_sort(api: httpx.AsyncClient, object_type: str) -> None:
    await define(api, object_type, name="rank", type="number")
    await define(api, object_type, name="due", type="datetime")
    await define(api, object_type, name="code", type="text")
    rng = random.Random(object_type)
    rows: list[tuple[str, dict[str, Any]]] = []
    for i in range(23):
        cf: dict[str, Any] = {}
        if i % 5:  # every fifth record has none of the values: not in a sorted page
            cf = {
                "rank": rng.choice([1, 2, 2, 3, 40, -1.5]),
                "due": f"2026-01-0{rng.randint(1, 3)}T0{rng.randint(0, 2)}:00:00Z",
                "code": rng.choice(["b", "B", "a", "é", LONG + "x", LONG + "a"]),
            }
        rows.append(((await create(api, object_type, f"r{i}", cf))["id"], cf))

    def order(field: str, key: Callable[[Any], Any], desc: bool) -> list[str]:
        have = [(key(cf[field]), uuid.UUID(i)) for i, cf in rows if field in cf]
        # the index holds 500 characters of text: values alike that far tie and fall back to ids
        return [str(u) for _, u in sorted(have, reverse=desc)]

    for field, key in (
        ("rank", lambda v: decimal.Decimal(str(v))),
        ("due", stamp),
        ("code", lambda v: v[:500]),
    ):
        for desc in (False, True):
            sort = f"{'-' if desc else ''}custom_fields.{field}"
            expected = order(field, key, desc)
            assert len(expected) == 18
            assert await walk(api, PATH[object_type], sort, via_search=desc) == expected, sort
            assert await walk(api, PATH[object_type], sort, via_search=not desc, limit=7) == expected


async def side_rows(pool: asyncpg.Pool, ws: Any, object_id: str) -> list[tuple[str, Any]]:
    rows = await pool.fetch(
        "SELECT field, coalesce(num::text, txt, ts::text) AS v FROM custom_field_values "
        "WHERE workspace_id = $1 AND object_id = $2 ORDER BY field",
        ws,
        uuid.UUID(object_id),
    )
    return [(r["field"], r["v"]) for r in rows]


async def test_the_index_follows_writes(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    await define(api, name="score", type="number")
    await define(api, name="vip", type="boolean")  # not indexed
    c = await create(api, "contact", "Ann", {"score": 5, "vip": True})
    assert await side_rows(pool, ws, c["id"]) == [("score", "5")]
    gt3 = {"field": "custom_fields.score", "op": "gt", "value": 3}
    assert await search_ids(api, gt3) == {c["id"]}
    r = await api.patch(f"/v1/contacts/{c['id']}", json={"custom_fields": {"score": 1, "vip": True}})
    assert r.status_code == 200, r.text
    assert await search_ids(api, gt3) == set()
    assert await side_rows(pool, ws, c["id"]) == [("score", "1")]
    r = await api.patch(f"/v1/contacts/{c['id']}", json={"custom_fields": {"score": None}})
    assert r.status_code == 200, r.text
    assert await side_rows(pool, ws, c["id"]) == []
    assert await walk(api, "contacts", "custom_fields.score", via_search=False) == []
    r = await api.patch(f"/v1/contacts/{c['id']}", json={"custom_fields": {"score": 7}})
    assert r.status_code == 200, r.text
    # archived records keep their values: include_archived lists still filter and sort by them
    assert (await api.delete(f"/v1/contacts/{c['id']}")).status_code == 200
    assert await search_ids(api, gt3) == set()
    assert await search_ids(api, gt3, include_archived=True) == {c["id"]}
    assert (await api.post(f"/v1/contacts/{c['id']}/restore")).status_code == 200
    assert await search_ids(api, gt3) == {c["id"]}
    assert await walk(api, "contacts", "-custom_fields.score", via_search=True) == [c["id"]]
    # a hard delete (workspace purge, erase tooling) takes the values along
    await pool.execute("DELETE FROM contacts WHERE workspace_id = $1 AND id = $2", ws, uuid.UUID(c["id"]))
    assert await side_rows(pool, ws, c["id"]) == []


async def test_backfill_archive_and_restore_of_a_definition(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    # written while the object type had no definitions (free-form), including a value of the wrong type
    ids = [(await create(api, "contact", f"c{n}", {"level": n}))["id"] for n in (3, 1, 2)]
    odd = (await create(api, "contact", "odd", {"level": "high"}))["id"]
    level = await define(api, name="level", type="number")
    assert await walk(api, "contacts", "custom_fields.level", via_search=False) == [ids[1], ids[2], ids[0]]
    assert await search_ids(api, {"field": "custom_fields.level", "op": "gte", "value": 2}) == {
        ids[0],
        ids[2],
    }
    assert odd not in await walk(api, "contacts", "-custom_fields.level", via_search=True)
    # archived: out of the index, not sortable, still filterable (by the stored values)
    assert (await api.delete(f"/v1/custom-fields/{level['id']}")).status_code == 200
    count = "SELECT count(*) FROM custom_field_values WHERE workspace_id = $1 AND field = 'level'"
    assert await pool.fetchval(count, ws) == 0
    for via_search in (False, True):
        if via_search:
            r = await api.post("/v1/contacts/search", json={"sort": ["custom_fields.level"]})
        else:
            r = await api.get("/v1/contacts", params={"sort": "-custom_fields.level"})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["path"] == "/sort"
        assert (
            "'level'" in r.json()["errors"][0]["message"] and "archived" in r.json()["errors"][0]["message"]
        )
    assert await search_ids(api, {"field": "custom_fields.level", "op": "gte", "value": 2}) == {
        ids[0],
        ids[2],
    }
    assert (await api.post(f"/v1/custom-fields/{level['id']}/restore")).status_code == 200
    assert await pool.fetchval(count, ws) == 3
    assert await walk(api, "contacts", "-custom_fields.level", via_search=False) == [ids[0], ids[2], ids[1]]


async def test_sorts_that_cannot_be_served_are_422s(api: httpx.AsyncClient) -> None:
    await define(api, name="vip", type="boolean")
    opts = [{"value": "a", "label": "A"}]
    await define(api, name="labels", type="multi_enum", options=opts)
    await define(api, name="score", type="number")
    for sort, words in (
        ("custom_fields.nope", "'nope'"),
        ("custom_fields.vip", "boolean"),
        ("-custom_fields.labels", "multi_enum"),
        ("custom_fields.", "custom_fields.<name>"),
    ):
        r = await api.get("/v1/contacts", params={"sort": sort})
        assert r.status_code == 422, (sort, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["path"] == "/sort"
        assert words in r.json()["errors"][0]["message"], r.text
        r = await api.post("/v1/contacts/search", json={"sort": [sort]})
        assert r.status_code == 422, (sort, r.text)
    # a cursor of another sort, or tampered with, is refused without reaching SQL
    await create(api, "contact", "a", {"score": 1})
    await create(api, "contact", "b", {"score": 2})
    r = await api.get("/v1/contacts", params={"sort": "custom_fields.score", "limit": "1"})
    cursor = r.json()["next_cursor"]
    r = await api.get("/v1/contacts", params={"sort": "-custom_fields.score", "cursor": cursor})
    assert r.status_code in (400, 422), r.text
    bad = base64.urlsafe_b64encode(b'["custom_fields.score", "x1", "' + str(uuid.uuid4()).encode() + b'"]')
    r = await api.get("/v1/contacts", params={"sort": "custom_fields.score", "cursor": bad.decode()})
    assert r.status_code in (400, 422), r.text


async def test_workspaces_do_not_see_each_others_values(make_client: MakeClient) -> None:
    one, two = await make_client(), await make_client()
    for api, values in ((one, [1, 5]), (two, [2, 6])):
        await define(api, name="score", type="number")
        for v in values:
            await create(api, "contact", f"v{v}", {"score": v})
    for api, want in ((one, ["v1", "v5"]), (two, ["v2", "v6"])):
        r = await api.get("/v1/contacts", params={"sort": "custom_fields.score"})
        assert [c["first_name"] for c in r.json()["data"]] == want
        got = await search_ids(api, {"field": "custom_fields.score", "op": "gte", "value": 0})
        assert len(got) == 2


async def test_plans_use_the_side_table_indexes(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    ws = api.workspace_id  # type: ignore[attr-defined]
    await define(api, name="score", type="number")
    await define(api, name="code", type="text")
    await pool.execute(
        "INSERT INTO contacts (workspace_id, id, created_at, updated_at, custom_fields) "
        "SELECT $1, gen_random_uuid(), now(), now(), "
        "jsonb_build_object('score', g, 'code', 'K-' || lpad(g::text, 5, '0')) "
        "FROM generate_series(1, 4000) AS g",
        ws,
    )
    await pool.execute("ANALYZE contacts")
    await pool.execute("ANALYZE custom_field_values")
    defs = await enforce.definitions(pool, ws, "contact")
    for flt, index in (
        (
            {"field": "custom_fields.score", "op": "between", "value": [100, 120]},
            "ix_custom_field_values_num",
        ),
        ({"field": "custom_fields.code", "op": "gt", "value": "K-03990"}, "ix_custom_field_values_txt"),
    ):
        params = Params(ws=ws)
        compiler = Compiler(CONTACTS, params)
        compiler.custom_definitions = defs
        cond = compiler.compile(flt)
        conditions = [in_workspace(CONTACTS), cond, live(CONTACTS)]
        statement = Compiled(select(contacts.c.id).where(*(c.build() for c in conditions)))
        args = statement.args(params.values)
        plan = "\n".join(r[0] for r in await pool.fetch(f"EXPLAIN {statement.text}", *args))
        assert index in plan, plan
        assert len(await pool.fetch(statement.text, *args)) == (21 if "score" in str(flt) else 10)
    for raw in ("custom_fields.score", "-custom_fields.code"):
        custom = await sorting.parse(pool, CONTACTS, ws, raw)
        assert custom is not None
        params = Params(ws=ws)
        statement = sorting.page_statement(
            CONTACTS, params, [in_workspace(CONTACTS), live(CONTACTS)], custom, None, 50
        )
        args = statement.args(params.values)
        plan = "\n".join(r[0] for r in await pool.fetch(f"EXPLAIN {statement.text}", *args))
        assert f"ix_custom_field_values_{custom.column}" in plan, plan
        assert "Sort " not in plan.replace("Sort Key", ""), plan  # walked in index order, no sort step
