"""A real ``crm-api serve`` process on the test database, for the tests whose client is another program (a
browser, a generated TypeScript client)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import asyncpg
import httpx

from crm_api.admin import keys
from crm_api.db import asyncpg_dsn


@dataclass(frozen=True)
class Server:
    url: str
    key: str
    """A key with every scope, in a workspace of its own."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _new_key(database_url: str) -> str:
    dsn, kwargs = asyncpg_dsn(database_url)
    conn = await asyncpg.connect(dsn, **kwargs)
    try:
        async with conn.transaction():
            ws, _ = await keys.ensure_workspace(conn, f"live-{uuid.uuid4().hex}")
            key, _ = await keys.create_key(conn, ws, "live server", ["*", "admin"])
    finally:
        await conn.close()
    return key


def new_key(database_url: str) -> str:
    """A key with every scope in a new workspace (made before a server runs, or outside any event loop)."""
    return asyncio.run(_new_key(database_url))


@contextmanager
def serve(
    database_url: str,
    *,
    port: int | None = None,
    key: str | None = None,
    settings: dict[str, str] | None = None,
    **more: str,
) -> Iterator[Server]:
    """``crm-api serve`` on a loopback port (a free one unless given; no dispatcher), until the block ends;
    ``key`` to keep a key across a restart, ``settings`` and ``more`` for further ``CRM_*`` variables."""
    port = port or _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_") or k == "CRM_SECRET_KEY"}
    env.update(CRM_DATABASE_URL=database_url, CRM_RUN_DISPATCHER="false", **(settings or {}), **more)
    cmd = [sys.executable, "-m", "crm_api", "serve", "--host", "127.0.0.1", "--port", str(port)]
    # its log (a line per request) goes to a file: a pipe nobody reads fills up and stalls the server
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise AssertionError(f"crm-api serve exited: {log.read()}")
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "crm-api serve did not come up"
                time.sleep(0.2)
            yield Server(url, key or asyncio.run(_new_key(database_url)))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
