"""POST /v1/<resource>/search: the filter grammar, compiled to SQL, checked field by field."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import httpx

from crm_api.contacts.spec import CONTACTS
from crm_api.resources.exprs import Params
from crm_api.resources.filters import Compiler


async def _setup(api: httpx.AsyncClient) -> dict[str, str]:
    acme = (
        await api.post("/v1/companies", json={"name": "Acme", "industry": "tools", "employee_count": 50})
    ).json()
    food = (
        await api.post("/v1/companies", json={"name": "Food", "industry": "food", "employee_count": 5})
    ).json()
    people = {
        "ann": {"email": "ann@x.com", "first_name": "Ann", "company_id": acme["id"], "tags": ["vip"],
                "custom_fields": {"plan": "pro", "seats": 10}, "lifecycle_stage": "lead"},
        "bob": {"email": "bob@y.org", "first_name": "Bob", "company_id": food["id"],
                "custom_fields": {"plan": "free", "seats": 2}, "lifecycle_stage": "customer"},
        "cy": {"first_name": "Cy", "tags": ["vip", "new"], "lifecycle_stage": "lead"},
    }  # fmt: skip
    ids = {}
    for key, body in people.items():
        ids[key] = (await api.post("/v1/contacts", json=body)).json()["id"]
    return ids


async def _names(api: httpx.AsyncClient, flt: Any, **extra: Any) -> list[str]:
    r = await api.post("/v1/contacts/search", json={"filter": flt, "sort": ["created_at"], **extra})
    assert r.status_code == 200, r.text
    return [c["first_name"] for c in r.json()["data"]]


async def test_operators_and_combinators(api: httpx.AsyncClient) -> None:
    await _setup(api)
    f = {"field": "first_name", "op": "eq", "value": "Ann"}
    assert await _names(api, f) == ["Ann"]
    assert await _names(api, {"field": "first_name", "op": "neq", "value": "Ann"}) == ["Bob", "Cy"]
    assert await _names(api, {"field": "first_name", "op": "in", "value": ["Ann", "Cy"]}) == ["Ann", "Cy"]
    assert await _names(api, {"field": "first_name", "op": "nin", "value": ["Ann"]}) == ["Bob", "Cy"]
    assert await _names(api, {"field": "email", "op": "contains", "value": "@Y."}) == ["Bob"]
    assert await _names(api, {"field": "email", "op": "starts_with", "value": "an"}) == ["Ann"]
    assert await _names(api, {"field": "email", "op": "is_null", "value": True}) == ["Cy"]
    assert await _names(api, {"field": "tags", "op": "contains", "value": "new"}) == ["Cy"]
    assert await _names(api, {"field": "tags", "op": "is_null", "value": True}) == ["Bob"]
    both = {"and": [{"field": "lifecycle_stage", "op": "eq", "value": "lead"}, {"not": f}]}
    assert await _names(api, both) == ["Cy"]
    either = {"or": [f, {"field": "first_name", "op": "eq", "value": "Bob"}]}
    assert await _names(api, either) == ["Ann", "Bob"]
    assert await _names(api, {"field": "first_name", "op": "between", "value": ["B", "Cz"]}) == ["Bob", "Cy"]
    assert await _names(api, {"field": "first_name", "op": "gt", "value": "B"}) == ["Bob", "Cy"]
    assert await _names(api, {"field": "first_name", "op": "lte", "value": "Bob"}) == ["Ann", "Bob"]


async def test_custom_fields_and_one_relation_hop(api: httpx.AsyncClient) -> None:
    await _setup(api)
    assert await _names(api, {"field": "custom_fields.plan", "op": "eq", "value": "pro"}) == ["Ann"]
    assert await _names(api, {"field": "custom_fields.plan", "op": "in", "value": ["pro", "free"]}) == [
        "Ann",
        "Bob",
    ]
    assert await _names(api, {"field": "custom_fields.plan", "op": "is_null", "value": True}) == ["Cy"]
    assert await _names(api, {"field": "custom_fields.seats", "op": "gt", "value": 5}) == ["Ann"]
    assert await _names(api, {"field": "company.industry", "op": "eq", "value": "food"}) == ["Bob"]
    assert await _names(api, {"field": "company.employee_count", "op": "gte", "value": 10}) == ["Ann"]


async def test_search_pages_with_cursors(api: httpx.AsyncClient) -> None:
    await _setup(api)
    flt = {"field": "first_name", "op": "is_null", "value": False}
    r = await api.post("/v1/contacts/search", json={"filter": flt, "sort": ["created_at"], "limit": 2})
    first = r.json()
    assert [c["first_name"] for c in first["data"]] == ["Ann", "Bob"] and first["has_more"]
    body = {"filter": flt, "sort": ["created_at"], "limit": 2, "cursor": first["next_cursor"]}
    second = (await api.post("/v1/contacts/search", json=body)).json()
    assert [c["first_name"] for c in second["data"]] == ["Cy"] and not second["has_more"]


async def test_bad_filters_are_422s_that_point_at_the_node(api: httpx.AsyncClient) -> None:
    cases: list[tuple[Any, str]] = [
        ({"field": "password", "op": "eq", "value": 1}, "/filter/field"),
        ({"field": "first_name", "op": "like", "value": "x"}, "/filter/op"),
        ({"and": [{"field": "first_name", "op": "eq", "value": 3}]}, "/filter/and/0/value"),
        ({"or": []}, "/filter/or"),
        ({"not": {"field": "company.secret", "op": "eq", "value": "x"}}, "/filter/not/field"),
        ({"field": "company.company.name", "op": "eq", "value": "x"}, "/filter/field"),
        ({"field": "created_at", "op": "gt", "value": "yesterday"}, "/filter/value"),
        ({"field": "first_name", "op": "between", "value": ["a"]}, "/filter/value"),
        ({"field": "first_name", "op": "eq", "value": "a\u0000b"}, "/filter/value"),
        ({"field": "company_id", "op": "lt", "value": "x"}, "/filter/op"),
        ({"field": "first_name", "op": "eq", "value": "a", "extra": 1}, "/filter/extra"),
    ]
    for flt, path in cases:
        r = await api.post("/v1/contacts/search", json={"filter": flt})
        assert r.status_code == 422, (flt, r.text)
        assert r.json()["errors"][0]["path"] == path, (flt, r.json())
    deep: Any = {"field": "first_name", "op": "eq", "value": "x"}
    for _ in range(20):
        deep = {"not": deep}
    assert (await api.post("/v1/contacts/search", json={"filter": deep})).status_code == 422
    r = await api.post("/v1/contacts/search", json={"sort": ["-created_at", "email"]})
    assert r.status_code == 422


async def test_sort_and_include_archived_take_only_what_the_spec_says(api: httpx.AsyncClient) -> None:
    """A sort is exactly ``-?<column>`` and include_archived a JSON boolean: an empty sort, a "+", spaces,
    a 0 for false are 422s naming the parameter, not guessed at (schemathesis sent each and got a 200)."""
    for sort in ("", "+created_at", " created_at", "--created_at", "+custom_fields.plan"):
        r = await api.get("/v1/contacts", params={"sort": sort})
        assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/sort", (sort, r.text)
    assert (await api.get("/v1/contacts", params={"sort": "-created_at"})).status_code == 200
    for value in (0, "true", None):
        r = await api.post("/v1/contacts/search", json={"include_archived": value})
        assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/include_archived", (value, r.text)
    assert (await api.post("/v1/contacts/search", json={"include_archived": True})).status_code == 200


async def _backdate(pool: asyncpg.Pool, ids: dict[str, str], ages: dict[str, dt.timedelta]) -> None:
    async with pool.acquire() as conn:
        for key, age in ages.items():
            await conn.execute(
                "UPDATE contacts SET created_at = now() - $2::interval WHERE id = $1",
                uuid.UUID(ids[key]),
                age,
            )


async def test_relative_times_compare_with_the_statements_now(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ids = await _setup(api)
    await _backdate(pool, ids, {"ann": dt.timedelta(days=40), "bob": dt.timedelta(days=10)})
    recent = {"field": "created_at", "op": "gt", "value": "-30d"}
    assert await _names(api, recent) == ["Bob", "Cy"]
    assert await _names(api, {"field": "created_at", "op": "gte", "value": "-1w"}) == ["Cy"]
    assert await _names(api, {"field": "created_at", "op": "lt", "value": "-2w"}) == ["Ann"]
    assert await _names(api, {"field": "created_at", "op": "lt", "value": "-15m"}) == ["Ann", "Bob"]
    assert await _names(api, {"field": "created_at", "op": "gt", "value": "-12h"}) == ["Cy"]
    window = {"field": "created_at", "op": "between", "value": ["-45d", "-35d"]}
    assert await _names(api, window) == ["Ann"]
    mixed = {"field": "created_at", "op": "between", "value": ["-45d", "2999-01-01T00:00:00Z"]}
    assert await _names(api, mixed) == ["Ann", "Bob", "Cy"]
    # through a relation hop, and in an aggregate
    hop = {"field": "company.created_at", "op": "gt", "value": "-1d"}
    assert await _names(api, hop) == ["Ann", "Bob"]
    body = {"filter": recent, "metrics": [{"op": "count"}]}
    counted = await api.post("/v1/contacts/aggregate", json=body)
    assert counted.status_code == 200, counted.text
    assert counted.json()["rows"][0]["values"]["count"] == 2


async def test_relative_times_on_a_datetime_custom_field(api: httpx.AsyncClient) -> None:
    definition = {"object_type": "contact", "name": "seen", "label": "Seen", "type": "datetime"}
    assert (await api.post("/v1/custom-fields", json=definition)).status_code == 201
    now = dt.datetime.now(dt.UTC)
    for name, age in (("Old", 60), ("New", 1)):
        seen = (now - dt.timedelta(days=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
        r = await api.post("/v1/contacts", json={"first_name": name, "custom_fields": {"seen": seen}})
        assert r.status_code == 201, r.text
    assert await _names(api, {"field": "custom_fields.seen", "op": "gt", "value": "-30d"}) == ["New"]
    assert await _names(api, {"field": "custom_fields.seen", "op": "lte", "value": "-30d"}) == ["Old"]


async def test_bad_relative_times_are_422s_naming_the_value(api: httpx.AsyncClient) -> None:
    for value, path in (
        ("-30x", "/filter/value"),
        ("30d", "/filter/value"),
        ("-9999999d", "/filter/value"),
        ("-d", "/filter/value"),
    ):
        r = await api.post(
            "/v1/contacts/search", json={"filter": {"field": "created_at", "op": "gt", "value": value}}
        )
        assert r.status_code == 422, (value, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["path"] for e in r.json()["errors"]] == [path], r.text
    nested = {"and": [{"field": "first_name", "op": "eq", "value": "A"},
                      {"field": "updated_at", "op": "between", "value": ["-1d", "-2q"]}]}  # fmt: skip
    r = await api.post("/v1/contacts/search", json={"filter": nested})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/filter/and/1/value/1", r.text
    # a relative time on a field that is not a time is a value of the wrong type
    r = await api.post(
        "/v1/contacts/search", json={"filter": {"field": "first_name", "op": "gt", "value": "-3d"}}
    )
    assert r.status_code == 200


def test_every_relative_value_shares_one_statement_shape() -> None:
    shapes = set()
    for value in ("-30d", "-2w", "-12h", "-15m"):
        params = Params(ws=None)
        compiled = Compiler(CONTACTS, params).compile({"field": "created_at", "op": "gt", "value": value})
        shapes.add(compiled.key)
        assert isinstance(params.values["p1"], dt.timedelta)
    assert len(shapes) == 1
