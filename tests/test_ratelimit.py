"""Quotas per API key and per workspace, 429 with Retry-After, the RateLimit fields, and the throttle on
failed authentication, on apps of their own (the session's app keeps the defaults, which no test meets)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from crm_api import auth
from crm_api.admin import keys
from crm_api.app import create_app
from crm_api.config import Settings
from crm_api.ratelimit import Quota

# draft-ietf-httpapi-ratelimit-headers-11: a List of String items with Integer parameters
LIMITS = re.compile(r'^"key";r=(\d+);t=(\d+), "workspace";r=(\d+);t=(\d+)$')
AUTH_LIMIT = re.compile(r'^"auth-failures";r=(\d+);t=(\d+)$')


def _settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"run_dispatcher": False, "auth_cache_seconds": 5.0}
    return Settings(**(base | overrides))


@asynccontextmanager
async def running(settings: Settings, database_url: str) -> AsyncIterator[FastAPI]:
    app = create_app(settings, url=database_url)
    async with app.router.lifespan_context(app):
        yield app


def client(app: FastAPI, key: str | None = None, address: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 40000)),
        base_url="http://test",
        headers={"Authorization": f"Bearer {key}"} if key else {},
    )


NewKey = Callable[..., Awaitable[tuple[str, uuid.UUID]]]


@pytest.fixture
def new_key(pool: asyncpg.Pool) -> NewKey:
    """``await new_key(workspace=name)``: a fresh key (all scopes) and its workspace's id."""

    async def make(workspace: str | None = None) -> tuple[str, uuid.UUID]:
        async with pool.acquire() as conn, conn.transaction():
            ws_id, _ = await keys.ensure_workspace(conn, workspace or f"rl-{uuid.uuid4().hex}")
            key, _ = await keys.create_key(conn, ws_id, "rl", ["*", "admin"])
        return key, ws_id

    return make


def test_a_quota_is_its_burst_per_whole_seconds_never_faster_than_the_rate() -> None:
    default = Quota.of("key", 1000, 2000)
    assert default is not None and default.policy == '"key";q=2000;w=2'
    uneven = Quota.of("key", 1000, 1500)  # 1.5 s rounds up to 2: 750 a second sustained, not more
    assert uneven is not None and (uneven.burst, uneven.window) == (1500, 2)
    assert Quota.of("key", 0, 2000) is None  # off


async def test_every_authenticated_response_carries_the_ratelimit_fields(api: httpx.AsyncClient) -> None:
    responses = [
        await api.get("/v1/contacts"),
        await api.get(f"/v1/contacts/{uuid.uuid4()}"),
        await api.post("/v1/contacts", json={"email": "not an email"}),
    ]
    assert [r.status_code for r in responses] == [200, 404, 422]
    left = []
    for r in responses:
        assert r.headers["ratelimit-policy"] == '"key";q=2000;w=2, "workspace";q=10000;w=2'
        match = LIMITS.match(r.headers["ratelimit"])
        assert match, r.headers["ratelimit"]
        left.append(int(match[1]))
    assert left[0] < 2000 and left[1] == left[0] - 1 and left[2] == left[1] - 1


async def test_a_key_over_its_burst_gets_429_and_its_quota_comes_back(
    database_url: str, new_key: NewKey
) -> None:
    settings = _settings(rate_limit_key_per_second=5, rate_limit_key_burst=10)
    key, ws = await new_key()
    sibling, _ = await new_key(workspace=str(ws))  # ensure_workspace takes a name: another workspace
    async with running(settings, database_url) as app, client(app, key) as c, client(app, sibling) as s:
        codes = [(await c.get("/v1/contacts")).status_code for _ in range(10)]
        assert codes == [200] * 10
        refused = await c.get("/v1/contacts")
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        body = refused.json()
        assert body["code"] == "rate_limited" and body["status"] == 429 and "API key" in body["detail"]
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 2
        assert refused.headers["ratelimit-policy"] == '"key";q=10;w=2, "workspace";q=10000;w=2'
        match = LIMITS.match(refused.headers["ratelimit"])
        assert match and match[1] == "0" and int(match[2]) <= retry_after
        # another key is not held back by this one
        assert (await s.get("/v1/contacts")).status_code == 200
        await asyncio.sleep(retry_after + 0.2)
        for _ in range(30):  # the quota refills at 5 a second; allow a slow machine a few tries
            again = await c.get("/v1/contacts")
            if again.status_code == 200:
                break
            await asyncio.sleep(float(again.headers["retry-after"]))
        assert again.status_code == 200


async def test_a_workspace_quota_is_shared_by_its_keys(
    database_url: str, new_key: NewKey, pool: asyncpg.Pool
) -> None:
    settings = _settings(rate_limit_workspace_per_second=1, rate_limit_workspace_burst=10)
    first, ws = await new_key()
    async with pool.acquire() as conn:
        second, _ = await keys.create_key(conn, ws, "second", ["*"])
    other, _ = await new_key()
    async with running(settings, database_url) as app, client(app, first) as a, client(app, second) as b:
        assert [(await a.get("/v1/contacts")).status_code for _ in range(6)] == [200] * 6
        assert [(await b.get("/v1/contacts")).status_code for _ in range(4)] == [200] * 4
        for c in (a, b):
            refused = await c.get("/v1/contacts")
            assert refused.status_code == 429 and "workspace" in refused.json()["detail"]
            match = LIMITS.match(refused.headers["ratelimit"])
            assert match and match[3] == "0"
        # the refused requests cost the keys nothing: b's own quota still shows its 4 requests only
        assert LIMITS.match(refused.headers["ratelimit"])[1] == str(2000 - 4)  # type: ignore[index]
        async with client(app, other) as o:
            assert (await o.get("/v1/contacts")).status_code == 200


class CountingLookup:
    """Stands in for auth's key lookup, counting database lookups."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    async def fetchrow(self, conn: Any, /, **params: Any) -> Any:
        self.calls += 1
        return await self.real.fetchrow(conn, **params)


async def test_failed_authentication_is_throttled_per_client_address(
    database_url: str, new_key: NewKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = CountingLookup(auth._LOOKUP)
    monkeypatch.setattr(auth, "_LOOKUP", lookups)
    good, _ = await new_key()
    fresh, _ = await new_key()
    async with (
        running(_settings(auth_failures_per_minute=20), database_url) as app,
        client(app, good) as known,
        client(app, "crm_bad_guess") as guesser,
        client(app, fresh) as unverified,
    ):
        assert (await known.get("/v1/contacts")).status_code == 200  # verified and cached
        seen = []
        for _ in range(20):
            r = await guesser.get("/v1/contacts")
            assert r.status_code == 401
            assert r.headers["ratelimit-policy"] == '"auth-failures";q=20;w=60'
            match = AUTH_LIMIT.match(r.headers["ratelimit"])
            assert match, r.headers["ratelimit"]
            seen.append(int(match[1]))
        assert seen == list(range(19, -1, -1))
        assert lookups.calls == 2  # the good key once, the wrong one once: then it is known to be wrong
        refused = await guesser.get("/v1/contacts")
        assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert AUTH_LIMIT.match(refused.headers["ratelimit"])[1] == "0"  # type: ignore[index]
        # other guesses from the address, and keys not yet verified, wait too, with no lookup
        other_guess = await guesser.get("/v1/contacts", headers={"Authorization": "Bearer crm_x_y"})
        assert other_guess.status_code == 429
        assert (await unverified.get("/v1/contacts")).status_code == 429
        assert lookups.calls == 2
        # a key already verified is served, and another address is not held back
        assert (await known.get("/v1/contacts")).status_code == 200
        async with client(app, "crm_bad_guess", address="127.0.0.2") as elsewhere:
            assert (await elsewhere.get("/v1/contacts")).status_code == 401


async def test_a_refused_key_costs_one_lookup_however_often_it_is_sent(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = CountingLookup(auth._LOOKUP)
    monkeypatch.setattr(auth, "_LOOKUP", lookups)
    async with (
        running(_settings(auth_failures_per_minute=0), database_url) as app,  # no throttle
        client(app, "crm_wrong_key") as c,
    ):
        codes = {(await c.get("/v1/contacts")).status_code for _ in range(500)}
        assert codes == {401}
        assert lookups.calls == 1
        for n in range(5):
            r = await c.get("/v1/contacts", headers={"Authorization": f"Bearer crm_wrong_{n}"})
            assert r.status_code == 401
        assert lookups.calls == 6


async def test_quotas_can_be_turned_off(database_url: str, new_key: NewKey) -> None:
    settings = _settings(rate_limit_key_per_second=0, rate_limit_workspace_per_second=0)
    key, _ = await new_key()
    async with running(settings, database_url) as app, client(app, key) as c:
        r = await c.get("/v1/contacts")
        assert r.status_code == 200 and "ratelimit" not in r.headers
