"""Webhook signing secrets, and stored responses that carry a secret, are sealed under the master key: the
database holds none in the clear, deliveries still verify, rows from before sealing get sealed, and the
master key rotates (``crm-api secrets rotate``, a real process) in one transaction."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import standardwebhooks
from pydantic import SecretStr
from receiver import Receiver, wait_for

from crm_api import jsonutil
from crm_api.admin import keys
from crm_api.app import create_app
from crm_api.config import Settings
from crm_api.db import EnginePool, asyncpg_dsn, create_pool
from crm_api.masterkey import Keyring, MasterKeyError, new_key
from crm_api.migrate import upgrade
from crm_api.webhooks.dispatcher import Dispatcher
from crm_api.webhooks.signing import new_secret


async def _workspace_dump(pool: asyncpg.Pool, workspace_id: uuid.UUID) -> str:
    """Every row of every table that belongs to the workspace, as text."""
    tables = await pool.fetch(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND column_name = 'workspace_id' ORDER BY table_name"
    )
    assert {"webhook_endpoints", "idempotency_keys", "api_keys"} <= {t["table_name"] for t in tables}
    parts = []
    for t in tables:
        name = t["table_name"]
        parts.append(
            await pool.fetchval(
                f'SELECT string_agg(t::text, chr(10)) FROM "{name}" t WHERE workspace_id = $1', workspace_id
            )
            or ""
        )
    return "\n".join(parts)


async def test_the_database_holds_no_secret_in_the_clear(
    api: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Receiver, start_dispatcher: Any
) -> None:
    body = {"url": receiver.url(), "event_types": ["contact.*"]}
    created = await api.post("/v1/webhooks", json=body, headers={"Idempotency-Key": "sealed-create"})
    assert created.status_code == 201, created.text
    ep = created.json()
    first = ep["secret"]
    path = f"/v1/webhooks/{ep['id']}/rotate-secret"
    rotated = await api.post(path, headers={"Idempotency-Key": "sealed-rotate"})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["secret"]
    key = await api.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["*"]}, headers={"Idempotency-Key": "sealed-key"}
    )
    assert key.status_code == 201, key.text
    api_key = key.json()["key"]

    dump = await _workspace_dump(pool, api.workspace_id)  # type: ignore[attr-defined]
    assert ep["id"] in dump and "sealed-rotate" in dump  # the dump does hold the rows
    for secret in (first, second):
        assert secret.startswith("whsec_")
        assert secret.removeprefix("whsec_") not in dump
    assert "whsec_" not in dump
    assert api_key not in dump and api_key.rsplit("_", 1)[1] not in dump
    stored = await pool.fetchrow(
        "SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1", ep["id"]
    )
    assert stored["secret"].startswith("gAAAAA") and stored["previous_secret"].startswith("gAAAAA")

    # replays answer with the secrets they first showed
    again = await api.post("/v1/webhooks", json=body, headers={"Idempotency-Key": "sealed-create"})
    assert again.headers["idempotent-replayed"] == "true" and again.json() == ep
    again = await api.post(path, headers={"Idempotency-Key": "sealed-rotate"})
    assert again.headers["idempotent-replayed"] == "true" and again.json()["secret"] == second
    again = await api.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["*"]}, headers={"Idempotency-Key": "sealed-key"}
    )
    assert again.json()["key"] == api_key
    # the API shows a secret on create and rotate only
    assert "secret" not in (await api.get(f"/v1/webhooks/{ep['id']}")).json()

    # and the dispatcher opens them to sign: both secrets verify during the overlap
    await start_dispatcher()
    assert (await api.post("/v1/contacts", json={"email": "sealed@example.com"})).status_code == 201
    request = (await wait_for(lambda: receiver.accepted()))[0]
    for secret in (first, second):
        standardwebhooks.Webhook(secret).verify(request.body, request.headers)


def _cli_env(database_url: str, secret_key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env["CRM_DATABASE_URL"] = database_url
    if secret_key is not None:
        env["CRM_SECRET_KEY"] = secret_key
    return env


def _cli(
    database_url: str, secret_key: str | None, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crm_api", *args],
        env=_cli_env(database_url, secret_key),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_secrets_stored_in_the_clear_are_sealed_at_start_and_by_the_command(
    api: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Receiver, start_dispatcher: Any, database_url: str
) -> None:
    """As an older version left them: the secrets in the clear, a stored response showing one."""
    r = await api.post("/v1/webhooks", json={"url": receiver.url(), "event_types": ["contact.*"]})
    ep = r.json()
    clear, clear_previous = new_secret(), new_secret()
    set_clear = (
        "UPDATE webhook_endpoints SET secret = $2, previous_secret = $3, "
        "previous_secret_expires_at = now() + interval '1 hour' WHERE id = $1"
    )
    await pool.execute(set_clear, ep["id"], clear, clear_previous)

    # a dispatcher's start seals them, and it signs with them
    await start_dispatcher()

    async def sealed() -> bool:
        row = await pool.fetchrow(
            "SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1", ep["id"]
        )
        return bool(row["secret"].startswith("gAAAAA") and row["previous_secret"].startswith("gAAAAA"))

    await wait_for(sealed)
    assert (await api.post("/v1/contacts", json={"email": "clear@example.com"})).status_code == 201
    request = (await wait_for(lambda: receiver.accepted()))[0]
    for secret in (clear, clear_previous):
        standardwebhooks.Webhook(secret).verify(request.body, request.headers)

    # ``crm-api secrets encrypt`` seals endpoints and the stored responses that carry a secret
    await pool.execute(set_clear, ep["id"], clear, None)
    response = jsonutil.dumps_str({"object": "webhook_endpoint", "id": ep["id"], "secret": clear})
    await pool.execute(
        "INSERT INTO idempotency_keys (workspace_id, key, request_hash, status, headers, body, created_at) "
        "VALUES ($1, 'from-before', 'h', 201, '{}', $2, now())",
        api.workspace_id,  # type: ignore[attr-defined]
        response,
    )
    done = await asyncio.to_thread(_cli, database_url, os.environ["CRM_SECRET_KEY"], "secrets", "encrypt")
    assert done.returncode == 0, done.stderr
    assert "sealed" in done.stderr
    keyring = Keyring([os.environ["CRM_SECRET_KEY"]], "the run's key")
    stored = await pool.fetchrow(
        "SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1", ep["id"]
    )
    assert keyring.open(stored["secret"]) == clear and stored["previous_secret"] is None
    body = await pool.fetchval(
        "SELECT body FROM idempotency_keys WHERE workspace_id = $1 AND key = 'from-before'",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    assert keyring.open(body) == response
    assert "whsec_" not in await _workspace_dump(pool, api.workspace_id)  # type: ignore[attr-defined]


# --- rotation, in a database of its own (it re-seals every row of the database) -------------------------


@pytest.fixture
async def own_database(database_url: str) -> AsyncIterator[str]:
    dsn, kwargs = asyncpg_dsn(database_url)
    name = f"crm_test_rotate_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn, **kwargs)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base, _, query = database_url.partition("?")
        url = f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


class Running:
    """An app on ``url`` with a master key, and a client holding an admin key of a fresh workspace."""

    def __init__(self, settings: Settings, url: str, secret_key: str) -> None:
        self.app = create_app(settings.model_copy(update={"secret_key": SecretStr(secret_key)}), url=url)
        self.url = url

    async def __aenter__(self) -> Running:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.pool: EnginePool = self.app.state.db.pool
        async with self.pool.acquire() as conn, conn.transaction():
            ws, _ = await keys.ensure_workspace(conn, "rotation")
            key, _ = await keys.create_key(conn, ws, "admin", ["*", "admin"])
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {key}"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)


async def _sealed_rows(url: str) -> list[tuple[Any, ...]]:
    dsn, kwargs = asyncpg_dsn(url)
    conn = await asyncpg.connect(dsn, **kwargs)
    try:
        endpoints = await conn.fetch("SELECT id, secret, previous_secret FROM webhook_endpoints ORDER BY id")
        records = await conn.fetch(
            "SELECT key, body FROM idempotency_keys WHERE body LIKE 'gAAAAA%' ORDER BY key"
        )
        return [tuple(r) for r in endpoints] + [tuple(r) for r in records]
    finally:
        await conn.close()


async def _delivery_verifies(
    url: str,
    settings: Settings,
    keyring: Keyring,
    client: httpx.AsyncClient,
    receiver: Receiver,
    *secrets: str,
) -> None:
    pool = await create_pool(url, 2)
    stop = asyncio.Event()
    dispatcher = Dispatcher(
        pool, settings.model_copy(update={"dispatcher_poll_seconds": 0.2}), keyring=keyring
    )
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        before = len(receiver.accepted())
        r = await client.post("/v1/contacts", json={"email": f"{uuid.uuid4().hex[:8]}@example.com"})
        assert r.status_code == 201, r.text
        request = (await wait_for(lambda: receiver.accepted()[before:]))[0]
        for secret in secrets:
            standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await pool.close()


async def test_rotating_the_master_key_reseals_everything_in_one_transaction(
    own_database: str, settings: Settings, receiver: Receiver
) -> None:
    old, new = new_key(), new_key()
    async with Running(settings, own_database, old) as running:
        body = {"url": receiver.url(), "event_types": ["contact.*"]}
        made = await running.client.post("/v1/webhooks", json=body, headers={"Idempotency-Key": "ep"})
        ep = made.json()
        path = f"/v1/webhooks/{ep['id']}/rotate-secret"
        rotated = await running.client.post(path, headers={"Idempotency-Key": "rot"})
        first, second = ep["secret"], rotated.json()["secret"]
    # the app has stopped, as the quick procedure says: rotate, then start again with the new key

    # One row sealed under a key nobody holds: the rotation fails as a whole and changes nothing.
    stranger = Keyring([new_key()], "a stranger's key").seal(new_secret())
    dsn, kwargs = asyncpg_dsn(own_database)
    conn = await asyncpg.connect(dsn, **kwargs)
    try:
        await conn.execute(
            "INSERT INTO webhook_endpoints (workspace_id, id, url, event_types, secret, created_at, "
            "updated_at) SELECT workspace_id, $1, url, event_types, $2, now(), now() FROM webhook_endpoints "
            "LIMIT 1",
            uuid.uuid4(),
            stranger,
        )
        before = await _sealed_rows(own_database)
        failed = await asyncio.to_thread(
            _cli, own_database, old, "secrets", "rotate", "--new-key", "-", stdin=new + "\n"
        )
        assert failed.returncode == 2, failed.stderr
        assert "opens with none of the keys" in failed.stderr and new not in failed.stderr + failed.stdout
        assert await _sealed_rows(own_database) == before
        await conn.execute("DELETE FROM webhook_endpoints WHERE secret = $1", stranger)
    finally:
        await conn.close()

    done = await asyncio.to_thread(
        _cli, own_database, old, "secrets", "rotate", "--new-key", "-", stdin=new + "\n"
    )
    assert done.returncode == 0, done.stderr
    assert "sealed 1 webhook endpoints' secrets and 2 stored responses anew" in done.stderr
    rows = await _sealed_rows(own_database)
    assert len(rows) == 3
    old_only, new_only = Keyring([old], "old"), Keyring([new], "new")
    (_, secret, previous), (_, ep_body), (_, rot_body) = rows
    assert new_only.open(secret) == second and new_only.open(previous) == first
    assert first in new_only.open(ep_body) and second in new_only.open(rot_body)
    for value in (secret, previous, ep_body, rot_body):
        with pytest.raises(MasterKeyError):
            old_only.open(value)

    # A process given the old key alone refuses to start, naming the problem.
    refused = await asyncio.to_thread(_cli, own_database, old, "worker")
    assert refused.returncode == 2 and "does not open with the master key" in refused.stderr

    # With the new key: replays show the same secrets, deliveries verify with both.
    async with Running(settings, own_database, new) as running:
        again = await running.client.post("/v1/webhooks", json=body, headers={"Idempotency-Key": "ep"})
        assert again.headers["idempotent-replayed"] == "true" and again.json()["secret"] == first
        again = await running.client.post(path, headers={"Idempotency-Key": "rot"})
        assert again.json()["secret"] == second
        await _delivery_verifies(own_database, settings, new_only, running.client, receiver, first, second)


def _opens_with(value: str, old: str, new: str) -> str:
    opened = []
    for name, key in (("old", old), ("new", new)):
        try:
            Keyring([key], name).open(value)
            opened.append(name)
        except MasterKeyError:
            pass
    return ",".join(opened)


async def test_rotating_without_a_pause_old_and_new_keys_side_by_side(
    own_database: str, settings: Settings, receiver: Receiver
) -> None:
    """README's procedure without downtime: every process on "old,new", then "new,old", rotate, then "new"."""
    old, new = new_key(), new_key()
    async with Running(settings, own_database, old) as running:
        made = await running.client.post(
            "/v1/webhooks", json={"url": receiver.url(), "event_types": ["contact.*"]}
        )
        sealed_old = made.json()["secret"]
    async with Running(settings, own_database, f"{old},{new}") as running:
        # opens what the old key sealed, still seals with the old one
        await _delivery_verifies(
            own_database, settings, Keyring([old, new], "k"), running.client, receiver, sealed_old
        )
    async with Running(settings, own_database, f"{new},{old}") as running:
        made = await running.client.post(
            "/v1/webhooks", json={"url": receiver.url("/b"), "event_types": ["company.*"]}
        )
        sealed_new = made.json()["secret"]
        # mid-rotation, one row opens only with the old key and the other only with the new
        secrets = [secret for _, secret, _ in await _sealed_rows(own_database)]
        assert sorted(_opens_with(s, old, new) for s in secrets) == ["new", "old"]
        done = await asyncio.to_thread(_cli, own_database, f"{new},{old}", "secrets", "rotate")
        assert done.returncode == 0, done.stderr
        assert "sealed 2 webhook endpoints' secrets and 0 stored responses anew" in done.stderr
    new_only = Keyring([new], "new")
    opened = {new_only.open(secret) for _, secret, _ in await _sealed_rows(own_database)}
    assert opened == {sealed_old, sealed_new}
    async with Running(settings, own_database, new) as running:
        await _delivery_verifies(own_database, settings, new_only, running.client, receiver, sealed_old)
