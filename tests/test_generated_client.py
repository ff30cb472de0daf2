"""A client generated from the committed spec with openapi-python-client works against the running app."""

from __future__ import annotations

import importlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from crm_api.admin import keys
from crm_api.app import create_app
from crm_api.config import Settings

SPEC = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


@pytest.fixture(scope="module")
def live_url(database_url: str, settings: Settings) -> Iterator[str]:
    """A real uvicorn on 127.0.0.1, in a thread of its own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, url=database_url), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    out = tmp_path_factory.mktemp("gen") / "crm_client"
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    cmd = [sys.executable, "-m", "openapi_python_client", "generate", "--meta", "none"]
    cmd += ["--path", str(SPEC), "--output-path", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(out.parent))
    try:
        yield importlib.import_module("crm_client")
    finally:
        sys.path.remove(str(out.parent))


def test_enums_and_nullable_fields_share_their_models(generated: Any) -> None:
    """One model per enum (ContactCreate.lifecycle_stage is a LifecycleStage | None), none per model and
    nullable field (the generator names those ``..._type_0``)."""
    models_dir = Path(generated.__file__).parent / "models"
    per_field = sorted(p.stem for p in models_dir.glob("*.py") if re.search(r"_type_\d+$", p.stem))
    assert per_field == []
    models = importlib.import_module("crm_client.models")
    assert not [name for name in dir(models) if re.search(r"Type\d+$", name)]
    assert {s.value for s in models.LifecycleStage} >= {"lead", "customer"}
    assert models.TicketStatus("on_hold").value == "on_hold"


async def test_generated_client_creates_fetches_and_lists(
    generated: Any, live_url: str, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        ws, _ = await keys.ensure_workspace(conn, f"gen-{uuid.uuid4().hex}")
        key, _ = await keys.create_key(conn, ws, "generated client", ["contacts:read", "contacts:write"])
    contacts_create = importlib.import_module("crm_client.api.contacts.contacts_create")
    contacts_get = importlib.import_module("crm_client.api.contacts.contacts_get")
    contacts_list = importlib.import_module("crm_client.api.contacts.contacts_list")
    contacts_update = importlib.import_module("crm_client.api.contacts.contacts_update")
    models = importlib.import_module("crm_client.models")

    client = generated.AuthenticatedClient(base_url=live_url, token=key)
    async with client as c:
        body = models.ContactCreate(
            email="Gen@Example.com",
            first_name="Gen",
            tags=["sdk"],
            lifecycle_stage=models.LifecycleStage.LEAD,
        )
        key = uuid.uuid4().hex
        created = await contacts_create.asyncio_detailed(client=c, body=body, idempotency_key=key)
        assert created.status_code == 201, created.content
        contact = created.parsed
        assert contact.email == "gen@example.com"
        assert contact.tags == ["sdk"]
        assert contact.lifecycle_stage == models.LifecycleStage.LEAD
        assert created.headers["etag"] == '"1"'
        again = await contacts_create.asyncio_detailed(client=c, body=body, idempotency_key=key)
        assert again.status_code == 201 and again.parsed.id == contact.id
        assert again.headers["idempotent-replayed"] == "true"

        change = models.ContactUpdate(lifecycle_stage=models.LifecycleStage.CUSTOMER)
        updated = await contacts_update.asyncio_detailed(contact.id, client=c, body=change, if_match='"1"')
        assert updated.status_code == 200, updated.content
        assert updated.parsed.lifecycle_stage == models.LifecycleStage.CUSTOMER
        stale = await contacts_update.asyncio_detailed(contact.id, client=c, body=change, if_match='"1"')
        assert stale.status_code == 412
        assert isinstance(stale.parsed, models.Problem)
        assert stale.parsed.code == "precondition_failed"

        fetched = await contacts_get.asyncio(client=c, id=contact.id)
        assert fetched is not None
        assert fetched.id == contact.id
        assert fetched.version == 2

        page = await contacts_list.asyncio(client=c)
        assert page is not None
        assert [item.id for item in page.data] == [contact.id]
        assert page.has_more is False

    # and the same server refuses the client without a key, as a problem document
    async with httpx.AsyncClient() as anonymous:
        r = await anonymous.get(f"{live_url}/v1/contacts")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
