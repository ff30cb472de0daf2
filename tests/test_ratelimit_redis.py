"""The Redis-backed quotas, against a real Redis: two real ``crm-api serve`` processes share one key's quota
and one address's failed-authentication budget; with Redis gone the API keeps serving.

``CRM_TEST_REDIS_URL`` names the Redis to use (``.ci/run`` sets it, starting one on 127.0.0.1:6379 when none
answers); it must answer. Without it, a ``redis-server`` on PATH is started on a free port for the run."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from crm_api.admin import keys
from crm_api.app import create_app
from crm_api.config import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    url = os.environ.get("CRM_TEST_REDIS_URL")
    if url:
        if not _answers(url):
            pytest.fail(f"CRM_TEST_REDIS_URL={url} does not answer PING")
        yield url
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail(
            "the Redis-backed rate limits need a Redis: set CRM_TEST_REDIS_URL, or install redis-server "
            "(apt-get install redis-server) so that the test starts one"
        )
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="crm-test-redis-"))
    cmd = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while not _answers(url):
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _serve(database_url: str, port: int, **env: str) -> subprocess.Popen[str]:
    # a clean environment but for the master key the suite may have made (secrets sealed at rest)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CRM_") or k == "CRM_SECRET_KEY"}
    environ |= {"CRM_DATABASE_URL": database_url, "CRM_RUN_DISPATCHER": "false", **env}
    cmd = [sys.executable, "-m", "crm_api", "serve", "--port", str(port)]
    return subprocess.Popen(cmd, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_up(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "server did not come up"
        time.sleep(0.2)


async def _new_key(pool: asyncpg.Pool) -> tuple[str, str]:
    async with pool.acquire() as conn, conn.transaction():
        ws_id, _ = await keys.ensure_workspace(conn, f"rl-redis-{uuid.uuid4().hex}")
        key, row = await keys.create_key(conn, ws_id, "rl", ["*"])
    return key, str(row["id"])


async def test_two_api_processes_share_the_quota_in_redis(
    redis_url: str, database_url: str, pool: asyncpg.Pool
) -> None:
    key, key_id = await _new_key(pool)
    prefix = f"crm-test-{uuid.uuid4().hex}"
    env = {
        "CRM_REDIS_URL": redis_url,
        "CRM_REDIS_KEY_PREFIX": prefix,
        "CRM_RATE_LIMIT_KEY_PER_SECOND": "1",
        "CRM_RATE_LIMIT_KEY_BURST": "10",  # 10 per 10 s: nothing comes back during the test
        "CRM_AUTH_FAILURES_PER_MINUTE": "5",
    }
    ports = [_free_port(), _free_port()]
    procs = [_serve(database_url, port, **env) for port in ports]
    store = redis.Redis.from_url(redis_url)
    try:
        for proc, port in zip(procs, ports, strict=True):
            _wait_up(proc, port)
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[0]}", headers=headers) as a,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[1]}", headers=headers) as b,
        ):
            assert [(await a.get("/v1/contacts")).status_code for _ in range(10)] == [200] * 10
            # a writes what it admitted to Redis within a second (ratelimit.MAX_AGE): read it as b will
            shared = SlidingWindowCounterRateLimiter(RedisStorage(redis_url, key_prefix=prefix))
            deadline = time.monotonic() + 10
            while shared.get_window_stats(RateLimitItemPerSecond(10, 10, namespace="crm"), "key", key_id)[1]:
                assert time.monotonic() < deadline, "a did not write its requests to Redis"
                await asyncio.sleep(0.1)
            refused = await b.get("/v1/contacts")  # b's first request for this key
            assert refused.status_code == 429, refused.text
            assert refused.json()["code"] == "rate_limited"
            assert refused.headers["ratelimit"].startswith('"key";r=0;')
            assert (await a.get("/v1/contacts")).status_code == 429

            # failed authentication: 5 refused keys on a use up the address's budget on b too
            for n in range(5):
                wrong = await a.get("/v1/contacts", headers={"Authorization": f"Bearer crm_no_{n}"})
                assert wrong.status_code == 401
            blocked = await b.get("/v1/contacts", headers={"Authorization": "Bearer crm_no_more"})
            assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
        assert list(store.scan_iter(f"{prefix}*")), "the buckets are in Redis, under the prefix"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        for k in store.scan_iter(f"{prefix}*"):
            store.delete(k)


async def test_without_redis_each_process_counts_alone(database_url: str, pool: asyncpg.Pool) -> None:
    """The control for the test above: the same two steps, in-process, and the second app admits."""
    key, _ = await _new_key(pool)
    settings = Settings(run_dispatcher=False, rate_limit_key_per_second=1, rate_limit_key_burst=10)
    first, second = create_app(settings, url=database_url), create_app(settings, url=database_url)
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        headers = {"Authorization": f"Bearer {key}"}
        transports = [httpx.ASGITransport(app=app) for app in (first, second)]
        async with (
            httpx.AsyncClient(transport=transports[0], base_url="http://a", headers=headers) as a,
            httpx.AsyncClient(transport=transports[1], base_url="http://b", headers=headers) as b,
        ):
            assert [(await a.get("/v1/contacts")).status_code for _ in range(10)] == [200] * 10
            assert (await a.get("/v1/contacts")).status_code == 429
            assert (await b.get("/v1/contacts")).status_code == 200


async def test_with_redis_gone_the_api_keeps_serving(
    database_url: str, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    key, _ = await _new_key(pool)
    nowhere = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there
    settings = Settings(run_dispatcher=False, redis_url=nowhere, rate_limit_key_burst=10)
    app = create_app(settings, url=database_url)
    caplog.set_level(logging.WARNING, logger="crm_api.ratelimit")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {key}"},
        ) as c,
    ):
        r = await c.get("/v1/contacts")
        assert r.status_code == 200
        assert r.headers["ratelimit"].startswith('"key";r=9;')  # a full bucket, less this request
        wrong = await c.get("/v1/contacts", headers={"Authorization": "Bearer crm_nope"})
        assert wrong.status_code == 401
    assert "rate-limit store did not answer" in caplog.text
