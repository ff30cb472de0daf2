"""/livez and /readyz against a database of their own: at head, behind, ahead, empty, refusing connections."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from alembic.script import ScriptDirectory

from crm_api.app import create_app
from crm_api.config import Settings
from crm_api.db import asyncpg_dsn
from crm_api.migrate import alembic_config, upgrade


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


async def _run(url: str, statement: str, *args: object) -> None:
    dsn, kwargs = asyncpg_dsn(url)
    conn = await asyncpg.connect(dsn, **kwargs)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def probed(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, str, str]]:
    """A client of an app on a fresh migrated database; the database's URL and the server's."""
    name = f"crm_test_probes_{uuid.uuid4().hex[:8]}"
    await _run(database_url, f'CREATE DATABASE "{name}"')
    url = _with_database(database_url, name)
    try:
        await asyncio.to_thread(upgrade, url)  # alembic runs its own event loop
        app = create_app(Settings(run_dispatcher=False, pool_size=2), url=url)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
                yield client, url, database_url
    finally:
        await _run(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _unavailable(r: httpx.Response, says: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) > 0
    assert r.json()["code"] == "unavailable"
    assert says in r.json()["detail"]


async def test_live_and_ready_need_no_key(probed: tuple[httpx.AsyncClient, str, str]) -> None:
    client, _, _ = probed
    assert (await client.get("/livez")).json() == {"status": "live"}
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "migration": head}
    assert (await client.get("/health")).json() == {"status": "ok"}  # bench/run.sh waits on it


async def test_not_ready_behind_the_newest_migration_and_ready_ahead_of_it(
    probed: tuple[httpx.AsyncClient, str, str],
) -> None:
    client, url, _ = probed
    script = ScriptDirectory.from_config(alembic_config(""))
    head = script.get_current_head()
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    try:
        await _run(url, "UPDATE alembic_version SET version_num = $1", previous)
        _unavailable(await client.get("/readyz"), "crm-api migrate")
        # a revision this release does not know is a newer one: migrations run before a rolling start
        await _run(url, "UPDATE alembic_version SET version_num = 'a_later_release'")
        assert (await client.get("/readyz")).json()["migration"] == "a_later_release"
        await _run(url, "DELETE FROM alembic_version")
        _unavailable(await client.get("/readyz"), "no schema")
    finally:
        await _run(url, "DELETE FROM alembic_version")
        await _run(url, "INSERT INTO alembic_version VALUES ($1)", head)
    assert (await client.get("/readyz")).status_code == 200


async def test_not_ready_while_the_database_refuses_connections_and_ready_again_after(
    probed: tuple[httpx.AsyncClient, str, str],
) -> None:
    client, url, server_url = probed
    name = url.partition("?")[0].rsplit("/", 1)[1]
    assert (await client.get("/readyz")).status_code == 200
    try:
        await _run(server_url, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        await _run(
            server_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        for _ in range(3):  # the pooled connections the server dropped, then new ones it refuses
            _unavailable(await client.get("/readyz"), "The database did not answer")
        assert (await client.get("/livez")).status_code == 200  # alive: nothing to restart
    finally:
        await _run(server_url, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    statuses = [(await client.get("/readyz")).status_code for _ in range(4)]
    assert statuses[-1] == 200, statuses  # dropped connections leave the pool as they are found


def test_the_spec_declares_the_probes_without_auth() -> None:
    spec = create_app(url="postgresql://unused").openapi()
    for path, operation_id in (("/livez", "health_live"), ("/readyz", "health_ready")):
        operation = spec["paths"][path]["get"]
        assert operation["operationId"] == operation_id
        assert operation["security"] == []
    assert "503" in spec["paths"]["/readyz"]["get"]["responses"]
    assert "/metrics" not in spec["paths"]
