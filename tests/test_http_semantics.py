"""HTTP as the server speaks it: caching and sniffing headers, no banner, the 401 challenge, and 405s that
name every method of the path, each checked against the OpenAPI document and on a real ``crm-api serve``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from crm_api.admin import keys
from crm_api.middleware import RequestContext

SPEC = json.loads((Path(__file__).parents[1] / "openapi" / "openapi.json").read_text())
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _shown(r: httpx.Response) -> None:
    assert r.headers["cache-control"] == "no-store", (r.request.url, r.headers)
    assert r.headers["x-content-type-options"] == "nosniff", (r.request.url, r.headers)


async def test_every_kind_of_response_is_no_store_and_nosniff(api: httpx.AsyncClient) -> None:
    created = await api.post("/v1/contacts", json={"email": f"{uuid.uuid4().hex[:10]}@example.com"})
    assert created.status_code == 201
    answers = [
        created,
        await api.get(f"/v1/contacts/{created.json()['id']}"),
        await api.get("/v1/contacts"),
        await api.get(f"/v1/contacts/{uuid.uuid4()}"),  # 404 problem
        await api.post("/v1/contacts", json={"email": 5}),  # 422 problem
        await api.post("/v1/contacts", content=b"x" * (300 * 1024)),  # 413 from the middleware
        await api.get("/v1/nothing-here"),  # 404 with no route
        await api.delete("/v1/contacts"),  # 405
        await api.get("/health"),
        await api.get("/openapi.json"),
    ]
    assert [r.status_code for r in answers] == [201, 200, 200, 404, 422, 413, 404, 405, 200, 200]
    for r in answers:
        _shown(r)


async def test_a_response_with_its_own_cache_control_keeps_it() -> None:
    """A route that means to be cached (a static asset) says so, and the middleware leaves it be."""

    async def asset(request: Request) -> PlainTextResponse:
        return PlainTextResponse("body{}", headers={"Cache-Control": "public, max-age=3600"})

    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = RequestContext(Starlette(routes=[Route("/asset", asset), Route("/page", page)]), max_body_bytes=10)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        cached, plain = await client.get("/asset"), await client.get("/page")
    assert cached.headers.get_list("cache-control") == ["public, max-age=3600"]
    assert cached.headers["x-content-type-options"] == "nosniff"
    assert plain.headers["cache-control"] == "no-store"


async def test_401_names_the_bearer_scheme(api: httpx.AsyncClient) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Basic dTpw"}, {"Authorization": "Bearer nope"}):
        r = await api.get("/v1/contacts", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        _shown(r)


def _fill(path: str) -> str:
    """A concrete URL for a path template: ids as UUIDs, other parameters as a plain word."""
    parts = []
    for segment in path.split("/"):
        if segment.startswith("{"):
            segment = str(uuid.uuid4()) if segment.endswith("id}") else "w1"
        parts.append(segment)
    return "/".join(parts)


def _declared(path: str) -> set[str]:
    return {m.upper() for m in SPEC["paths"][path] if m.upper() in METHODS}


async def test_a_method_the_path_lacks_is_405_naming_the_methods_it_has(api: httpx.AsyncClient) -> None:
    """What schemathesis' unsupported-method check asks of every path of the document."""
    wrong: list[tuple[str, str, int, str | None]] = []
    for path in SPEC["paths"]:
        declared = _declared(path)
        url = _fill(path)
        for method in sorted(set(METHODS) - declared):
            r = await api.request(method, url)
            allow = r.headers.get("allow")
            if r.status_code != 405 or allow is None or set(allow.split(", ")) != declared:
                wrong.append((method, url, r.status_code, allow))
            else:
                _shown(r)
                assert r.json()["code"] == "method_not_allowed"
    assert not wrong, wrong


@pytest.mark.parametrize(
    ("method", "url", "allow"),
    [
        ("PATCH", "/v1/contacts/search", "POST"),
        ("DELETE", "/v1/contacts/batch", "POST"),
        ("GET", "/v1/companies/duplicates", "POST"),
        ("PATCH", f"/v1/pipelines/{uuid.uuid4()}/stages/order", "PUT"),
        ("POST", "/v1/contacts/by-email/merge", "PUT"),
        ("DELETE", "/v1/contacts", "GET, POST"),
        ("PUT", f"/v1/contacts/{uuid.uuid4()}", "GET, PATCH, DELETE"),
    ],
)
async def test_a_literal_segment_is_its_own_path(
    api: httpx.AsyncClient, method: str, url: str, allow: str
) -> None:
    """``/search`` is not a contact id: other methods on it are 405, not a 422 about a malformed id."""
    r = await api.request(method, url, json={})
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow


async def test_the_literal_paths_and_the_id_paths_still_answer(api: httpx.AsyncClient) -> None:
    assert (await api.post("/v1/contacts/search", json={})).status_code == 200
    assert (await api.post("/v1/contacts/batch", json={"items": [{"first_name": "x"}]})).status_code == 200
    assert (await api.get(f"/v1/contacts/{uuid.uuid4()}")).status_code == 404
    malformed = await api.patch("/v1/contacts/not-an-id", json={})
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["path"] == "/path/id"


# --- a real server ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(database_url: str) -> Iterator[str]:
    """``crm-api serve`` on the test database, as a process of its own."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_") or k == "CRM_SECRET_KEY"}
    env.update(CRM_DATABASE_URL=database_url, CRM_RUN_DISPATCHER="false")
    cmd = [sys.executable, "-m", "crm_api", "serve", "--port", str(port), "--no-dispatcher"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base}/health", timeout=2)
                    break
                except httpx.TransportError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        output = log.read().decode()[-2000:]
                        raise AssertionError(f"crm-api serve did not come up: {output}") from None
                    time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)


async def _key(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn, conn.transaction():
        ws, _ = await keys.ensure_workspace(conn, f"http-{uuid.uuid4().hex}")
        key, _ = await keys.create_key(conn, ws, "http", ["*"])
    return key


async def test_the_served_app_over_real_http(served: str, pool: asyncpg.Pool) -> None:
    auth = {"Authorization": f"Bearer {await _key(pool)}"}
    async with httpx.AsyncClient(base_url=served, timeout=10) as client:
        health = await client.get("/health")
        listed = await client.get("/v1/contacts", headers=auth)
        anonymous = await client.get("/v1/contacts")
        search_patch = await client.patch("/v1/contacts/search", headers=auth, json={})
        collection_delete = await client.delete("/v1/contacts", headers=auth)
        money = await client.post(
            "/v1/deals", headers=auth, json={"name": "D", "amount": 12.5, "currency": "EUR"}
        )
    answers: list[Any] = [health, listed, anonymous, search_patch, collection_delete, money]
    assert [r.status_code for r in answers] == [200, 200, 401, 405, 405, 422]
    for r in answers:
        assert "server" not in r.headers, r.headers  # no banner
        assert r.headers["date"]  # RFC 9110 wants it from an origin server with a clock
        _shown(r)
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert search_patch.headers["allow"] == "POST"
    assert collection_delete.headers["allow"] == "GET, POST"
    assert money.json()["errors"][0]["path"] == "/amount"
