"""The command line, run as a newcomer runs it: real processes, real databases."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_create_key_prints_the_key_alone_on_the_last_line(database_url: str) -> None:
    env = _env(CRM_DATABASE_URL=database_url)
    cmd = [
        sys.executable,
        "-m",
        "crm_api",
        "create-key",
        "--workspace",
        "cli-ws",
        "--scopes",
        "contacts:read",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert key.startswith("crm_") and " " not in key
    assert "cli-ws" in done.stderr  # progress goes to stderr


def test_create_key_refuses_an_unknown_scope(database_url: str) -> None:
    env = _env(CRM_DATABASE_URL=database_url)
    cmd = [sys.executable, "-m", "crm_api", "create-key", "--workspace", "cli-ws", "--scopes", "contacts:fly"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "contacts:fly" in done.stderr
    assert done.stdout == ""


@pytest.fixture
def data_home() -> Iterator[Path]:
    """A data dir outside pytest's tmp dirs: another pytest run by the same user resets those to 0700, which
    locks out the unprivileged user the embedded PostgreSQL runs as."""
    path = Path(tempfile.mkdtemp(prefix="crm-test-serve-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_serve_on_a_bare_machine_starts_embedded_postgres_and_prints_a_key(data_home: Path) -> None:
    """No CRM_DATABASE_URL: the server starts its own PostgreSQL, migrates, and prints one admin key once."""
    tmp_path = data_home
    port = _free_port()
    env = _env(CRM_DATA_DIR=str(tmp_path / "data"), CRM_RUN_DISPATCHER="false")
    cmd = [sys.executable, "-m", "crm_api", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        key = proc.stdout.readline().strip()
        assert key.startswith("crm_"), key
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/v1/contacts", headers={"Authorization": f"Bearer {key}"}
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
        assert r.status_code == 200
        assert r.json()["data"] == []
        docs = httpx.get(f"http://127.0.0.1:{port}/docs")
        assert docs.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # A second start reuses the data and prints no new key.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/v1/contacts", headers={"Authorization": f"Bearer {key}"}
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not come up again"
                time.sleep(0.2)
        assert r.status_code == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "crm_" not in out
    # and the embedded PostgreSQL it started is stopped with it
    pidfile = tmp_path / "data" / "pgdata" / "postmaster.pid"
    deadline = time.monotonic() + 30
    while pidfile.exists():
        assert time.monotonic() < deadline, "embedded PostgreSQL left running"
        time.sleep(0.2)
