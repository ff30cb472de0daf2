"""Bad input is a 4xx problem document that names the problem, and nothing is written."""

from __future__ import annotations

import base64
import json

import asyncpg
import httpx
import pytest

from crm_api.config import Settings


async def _rows(pool: asyncpg.Pool, api: httpx.AsyncClient) -> tuple[int, int]:
    ws = api.workspace_id  # type: ignore[attr-defined]
    contacts = await pool.fetchval("SELECT count(*) FROM contacts WHERE workspace_id = $1", ws)
    events = await pool.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", ws)
    return contacts, events


def _is_problem(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = r.json()
    assert {"type", "title", "status", "detail", "code", "request_id"} <= set(body)
    assert body["status"] == status
    assert body["request_id"] == r.headers["x-request-id"]
    return body


BAD_BODIES = [
    ({"email": 5}, "/email"),
    ({"email": "nope"}, "/email"),
    ({"first_name": "a\u0000b"}, "/first_name"),
    ({"custom_fields": {"k": "a\u0000"}}, "/custom_fields"),
    ({"custom_fields": {"n": 2**70}}, "/custom_fields"),
    ({"nickname": "x"}, "/nickname"),
    ({"tags": "vip"}, "/tags"),
    ({"lifecycle_stage": "king"}, "/lifecycle_stage"),
    ({"company_id": "not-a-uuid"}, "/company_id"),
    ({"phone": "call me"}, "/phone"),
    ({"first_name": "x" * 256}, "/first_name"),
]


@pytest.mark.parametrize(("body", "path"), BAD_BODIES, ids=[p for _, p in BAD_BODIES])
async def test_bad_fields_are_422_naming_the_field(
    api: httpx.AsyncClient, pool: asyncpg.Pool, body: dict[str, object], path: str
) -> None:
    problem = _is_problem(await api.post("/v1/contacts", json=body), 422)
    errors = problem["errors"]
    assert isinstance(errors, list)
    assert any(str(e["path"]).startswith(path) for e in errors), errors
    assert await _rows(pool, api) == (0, 0)


async def test_integer_out_of_range(api: httpx.AsyncClient) -> None:
    problem = _is_problem(await api.post("/v1/companies", json={"name": "x", "employee_count": 2**70}), 422)
    assert problem["errors"][0]["path"] == "/employee_count"  # type: ignore[index]


async def test_malformed_json_is_400(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    r = await api.post("/v1/contacts", content=b'{"email": ', headers={"content-type": "application/json"})
    assert _is_problem(r, 400)["code"] == "bad_request"
    deep = await api.post(
        "/v1/contacts", content=b"[" * 100_000, headers={"content-type": "application/json"}
    )
    _is_problem(deep, 400)
    assert await _rows(pool, api) == (0, 0)


async def test_oversize_bodies_are_413(api: httpx.AsyncClient, settings: Settings) -> None:
    big = b'{"first_name": "' + b"x" * settings.max_body_bytes + b'"}'
    r = await api.post("/v1/contacts", content=big, headers={"content-type": "application/json"})
    assert _is_problem(r, 413)["code"] == "payload_too_large"

    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"first_name": "'
        for _ in range(settings.max_body_bytes // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    streamed = await api.post("/v1/contacts", content=chunks(), headers={"content-type": "application/json"})
    _is_problem(streamed, 413)


async def test_paths_headers_and_routes(api: httpx.AsyncClient) -> None:
    _is_problem(await api.get("/v1/contacts/123"), 422)
    _is_problem(await api.get("/v1/nothing-here"), 404)
    _is_problem(await api.put("/v1/contacts"), 405)
    c = (await api.post("/v1/contacts", json={})).json()
    _is_problem(await api.patch(f"/v1/contacts/{c['id']}", json={}, headers={"If-Match": "abc"}), 422)
    _is_problem(await api.post("/v1/contacts", json={}, headers={"Idempotency-Key": "x" * 300}), 400)
    _is_problem(await api.put("/v1/contacts/by-email/a%00b@x.com", json={}), 422)


async def test_request_id_is_echoed_or_made(api: httpx.AsyncClient) -> None:
    mine = await api.get("/v1/contacts", headers={"X-Request-ID": "req-123"})
    assert mine.headers["x-request-id"] == "req-123"
    made = await api.get("/v1/contacts")
    assert len(made.headers["x-request-id"]) >= 16
    failed = await api.get("/v1/contacts/123", headers={"X-Request-ID": "req-456"})
    assert failed.json()["request_id"] == "req-456"


# Timestamps that parse but have no UTC datetime (year 1 ahead of UTC, year 9999 behind it)
EDGE_TIMESTAMPS = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"]


@pytest.mark.parametrize("stamp", EDGE_TIMESTAMPS)
async def test_timestamps_outside_utc_range_are_422(
    api: httpx.AsyncClient, pool: asyncpg.Pool, stamp: str
) -> None:
    body = {"first_name": "x", "marketing_consent_at": stamp}
    problem = _is_problem(await api.post("/v1/contacts", json=body), 422)
    assert problem["errors"][0]["path"] == "/marketing_consent_at"  # type: ignore[index]
    batch = await api.post("/v1/contacts/batch", json={"items": [body]})
    assert batch.status_code == 200, batch.text
    result = batch.json()["results"][0]
    assert result["status"] == 422
    assert result["error"]["errors"][0]["path"] == "/items/0/marketing_consent_at"
    assert await _rows(pool, api) == (0, 0)
    problem = _is_problem(await api.get("/v1/contacts", params={"updated_after": stamp}), 422)
    assert problem["errors"][0]["path"] == "/updated_after"  # type: ignore[index]
    search = {"filter": {"field": "created_at", "op": "gt", "value": stamp}}
    problem = _is_problem(await api.post("/v1/contacts/search", json=search), 422)
    assert problem["errors"][0]["path"] == "/filter/value"  # type: ignore[index]


async def _raw(api: httpx.AsyncClient, path: str, text: str) -> httpx.Response:
    """POST a JSON text as is (httpx cannot encode a lone surrogate; JSON can: "\\ud800")."""
    return await api.post(path, content=text.encode(), headers={"content-type": "application/json"})


LONE_SURROGATES = [
    (
        "/v1/contacts/search",
        r'{"filter": {"field": "first_name", "op": "eq", "value": "\ud800"}}',
        "/filter/value",
    ),
    (
        "/v1/contacts/search",
        r'{"filter": {"or": [{"field": "custom_fields.\udc00", "op": "eq", "value": "x"}]}}',
        "/filter/or/0/field",
    ),
    (
        "/v1/contacts/search",
        r'{"filter": {"field": "custom_fields.k", "op": "in", "value": ["a", "\ud800"]}}',
        "/filter/value/1",
    ),
    ("/v1/contacts", r'{"first_name": "x", "custom_fields": {"k": "\ud800"}}', "/custom_fields"),
    ("/v1/contacts", r'{"first_name": "x", "custom_fields": {"k": ["\ud800"]}}', "/custom_fields"),
]


@pytest.mark.parametrize(("route", "text", "path"), LONE_SURROGATES, ids=[p for _, _, p in LONE_SURROGATES])
async def test_lone_surrogates_are_422_naming_the_field(
    api: httpx.AsyncClient, pool: asyncpg.Pool, route: str, text: str, path: str
) -> None:
    problem = _is_problem(await _raw(api, route, text), 422)
    assert problem["errors"][0]["path"] == path  # type: ignore[index]
    assert await _rows(pool, api) == (0, 0)


NUMBERS_BEYOND_NUMERIC = [
    ("amount", "1e1000000"),
    ("amount", "1e-1000000"),
    ("amount", "1" * 2000),
]


@pytest.mark.parametrize(("field", "value"), NUMBERS_BEYOND_NUMERIC, ids=["huge", "tiny", "long"])
async def test_numbers_beyond_numeric_in_filters_are_422(
    api: httpx.AsyncClient, field: str, value: str
) -> None:
    search = {"filter": {"and": [{"field": field, "op": "gt", "value": value}]}}
    problem = _is_problem(await api.post("/v1/deals/search", json=search), 422)
    assert problem["errors"][0]["path"] == "/filter/and/0/value"  # type: ignore[index]


async def test_integer_beyond_python_str_limit_in_filter_is_4xx(api: httpx.AsyncClient) -> None:
    text = '{"filter": {"field": "amount", "op": "gt", "value": ' + "9" * 5000 + "}}"
    r = await _raw(api, "/v1/deals/search", text)
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"] == "application/problem+json"


def _cursor(parts: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


TAMPERED_CURSORS = [
    ["-created_at", ["t"], "01a212e1-8f2c-709c-9eb9-5ad2ab8785b1"],
    ["-created_at", [], "01a212e1-8f2c-709c-9eb9-5ad2ab8785b1"],
    ["-created_at", ["t", "0001-01-01T00:00:00+01:00"], "01a212e1-8f2c-709c-9eb9-5ad2ab8785b1"],
    ["-created_at", ["t", "2026-01-01T00:00:00Z"], 5],
    ["-sequence", 2**64 - 1, "01a212e1-8d59-7048-abe6-443fd34d6e40"],
    ["history", 1, "\u0000"],
    ["history", 2**64 - 1, "email"],
]


@pytest.mark.parametrize("parts", TAMPERED_CURSORS, ids=[str(i) for i in range(len(TAMPERED_CURSORS))])
async def test_tampered_cursors_are_400_naming_the_cursor(api: httpx.AsyncClient, parts: object) -> None:
    contact = (await api.post("/v1/contacts", json={"first_name": "c"})).json()
    cursor = _cursor(parts)
    for route in (
        "/v1/contacts",
        f"/v1/contacts/{contact['id']}/timeline",
        f"/v1/contacts/{contact['id']}/history",
    ):
        problem = _is_problem(await api.get(route, params={"cursor": cursor}), 400)
        assert problem["code"] == "invalid_cursor"
        assert problem["errors"][0]["path"] == "/cursor"  # type: ignore[index]
    problem = _is_problem(await api.post("/v1/contacts/search", json={"cursor": cursor}), 400)
    assert problem["errors"][0]["path"] == "/cursor"  # type: ignore[index]


async def test_a_value_the_database_refuses_is_422_not_500(
    api: httpx.AsyncClient, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The net under schema validation: a DataError (class 22) is the client's value, not a crash."""
    from crm_api.resources import service

    async def overflow(conn: asyncpg.Connection, *args: object, **kwargs: object) -> None:
        await conn.execute("SELECT '1e30'::numeric(20, 2)")

    monkeypatch.setattr(service, "create", overflow)
    problem = _is_problem(await api.post("/v1/contacts", json={"first_name": "x"}), 422)
    assert problem["code"] == "validation_error"
    assert problem["errors"][0]["path"] == "/"  # type: ignore[index]
    assert await _rows(pool, api) == (0, 0)


async def test_if_match_takes_exactly_the_forms_the_spec_gives(api: httpx.AsyncClient) -> None:
    """``"3"``, ``W/"3"`` and ``3``; anything else (an unbalanced or doubled quote) is a 422, as the spec's
    pattern says."""
    c = (await api.post("/v1/contacts", json={"email": "im@x.com"})).json()
    version = c["version"]
    for value in ('"{v}"', 'W/"{v}"', "{v}"):
        r = await api.patch(
            f"/v1/contacts/{c['id']}", json={"title": value}, headers={"If-Match": value.format(v=version)}
        )
        assert r.status_code == 200, (value, r.text)
        version = r.json()["version"]
    for value in ('"{v}', '""{v}""', "{v}x", 'W/{v}"'):
        r = await api.patch(f"/v1/contacts/{c['id']}", json={}, headers={"If-Match": value.format(v=version)})
        _is_problem(r, 422)
        assert r.json()["errors"][0]["path"] == "/headers/If-Match", (value, r.text)
