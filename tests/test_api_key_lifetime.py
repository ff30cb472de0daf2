"""API keys that expire (``expires_at``) and say when they were last used (``last_used_at``), on the real
clock: no time is faked, the tests wait it out."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from crm_api.app import create_app
from crm_api.config import Settings


def _at(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


async def _new_key(api: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    r = await api.post("/v1/api-keys", json={"name": "lifetime", "scopes": ["contacts:read"], **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _as(api: httpx.AsyncClient, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=api._transport, base_url="http://test", headers={"Authorization": f"Bearer {key}"}
    )


async def test_a_key_stops_working_when_it_expires(api: httpx.AsyncClient) -> None:
    # 5 s: room for the first request to be served before the expiry on a busy machine
    created = await _new_key(api, expires_at=_at(5))
    expires = dt.datetime.fromisoformat(created["expires_at"])
    assert 2 < (expires - dt.datetime.now(dt.UTC)).total_seconds() <= 5
    async with _as(api, created["key"]) as client:
        assert (await client.get("/v1/contacts")).status_code == 200  # cached from here on
        await asyncio.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 0.2)
        refused = await client.get("/v1/contacts")
        assert refused.status_code == 401, refused.text
        assert "expired" in refused.json()["detail"]
        # read afresh from the database (as a process that never saw it would), it is refused as well
        api._transport.app.state.key_cache.forget_key(uuid.UUID(created["id"]))  # type: ignore[attr-defined]
        assert (await client.get("/v1/contacts")).status_code == 401
    listed = {k["id"]: k for k in (await api.get("/v1/api-keys")).json()["data"]}
    assert listed[created["id"]]["expires_at"] == created["expires_at"]


async def test_a_key_without_expiry_never_expires_and_a_past_expiry_is_refused(
    api: httpx.AsyncClient,
) -> None:
    assert (await _new_key(api))["expires_at"] is None
    for past in (_at(-1), "2020-01-01T00:00:00Z"):
        r = await api.post("/v1/api-keys", json={"name": "x", "scopes": ["*"], "expires_at": past})
        assert r.status_code == 422, r.text
        assert r.json()["errors"] == [{"path": "/expires_at", "message": "must be in the future"}]
    r = await api.post("/v1/api-keys", json={"name": "x", "scopes": ["*"], "expires_at": "tomorrow"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/expires_at"


@pytest.fixture
async def quick_app(database_url: str, settings: Settings) -> AsyncIterator[FastAPI]:
    """An app of its own whose key-use writer flushes every 0.2 s, and writes a key at most every 2 s."""
    quick = settings.model_copy(update={"key_use_flush_seconds": 0.2, "key_use_seconds": 2.0})
    app = create_app(quick, url=database_url)
    async with app.router.lifespan_context(app):
        yield app


async def _use(pool: asyncpg.Pool, key_id: str) -> tuple[dt.datetime | None, int]:
    row = await pool.fetchrow(
        "SELECT last_used_at, xmin::text::bigint AS xmin FROM api_keys WHERE id = $1", key_id
    )
    return row["last_used_at"], row["xmin"]


async def test_last_used_at_is_written_once_per_period_however_many_requests(
    api: httpx.AsyncClient, quick_app: FastAPI, pool: asyncpg.Pool
) -> None:
    created = await _new_key(api)
    assert created["last_used_at"] is None
    transport = httpx.ASGITransport(app=quick_app)
    headers = {"Authorization": f"Bearer {created['key']}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
        started = dt.datetime.now(dt.UTC)
        assert (await client.get("/v1/contacts")).status_code == 200
        await asyncio.sleep(0.6)  # three flushes
        first, version = await _use(pool, created["id"])
        assert first is not None and started <= first <= dt.datetime.now(dt.UTC)

        # 60 more requests over about 1.2 s, across several flushes, all within the 2 s period: no write
        deadline = time.monotonic() + 1.2
        count = 0
        while time.monotonic() < deadline:
            assert (await client.get("/v1/contacts")).status_code == 200
            count += 1
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.4)
        assert count >= 20
        assert await _use(pool, created["id"]) == (first, version), "last_used_at was written again too soon"

        # past the period, the next use is written (once)
        await asyncio.sleep(max(0.0, 2.1 - (dt.datetime.now(dt.UTC) - first).total_seconds()))
        assert (await client.get("/v1/contacts")).status_code == 200
        await asyncio.sleep(0.6)
        later, later_version = await _use(pool, created["id"])
        assert later is not None and later - first >= dt.timedelta(seconds=2) and later_version != version
    shown = {k["id"]: k for k in (await api.get("/v1/api-keys")).json()["data"]}[created["id"]]
    assert dt.datetime.fromisoformat(shown["last_used_at"]) == later


async def test_another_process_does_not_write_a_key_again_within_the_period(
    api: httpx.AsyncClient, quick_app: FastAPI, pool: asyncpg.Pool
) -> None:
    """Two processes (here two apps) using one key: the statement itself keeps the second from writing."""
    created = await _new_key(api)
    second = create_app(quick_app.state.settings.model_copy(), url=None)
    second.state.db = quick_app.state.db  # same database, its own memory of what it wrote
    headers = {"Authorization": f"Bearer {created['key']}"}
    for app in (quick_app, second):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as c:
            assert (await c.get("/v1/contacts")).status_code == 200
    await asyncio.sleep(0.6)  # quick_app flushed its use
    first, version = await _use(pool, created["id"])
    assert first is not None
    assert await second.state.key_use.flush(pool) == 0  # due for this process, refused by the statement
    assert await _use(pool, created["id"]) == (first, version)
