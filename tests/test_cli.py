"""The command line, run as a newcomer runs it: real processes, real databases."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

import crm_api
from crm_api.db import asyncpg_dsn
from crm_api.migrate import head

ROOT = Path(__file__).resolve().parents[1]


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


def _crm(*args: str) -> list[str]:
    return [sys.executable, "-m", "crm_api", *args]


def _head_of(url: str) -> str | None:
    async def read() -> str | None:
        dsn, kwargs = asyncpg_dsn(url)
        conn = await asyncpg.connect(dsn, **kwargs)
        try:
            if not await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"):
                return None
            return await conn.fetchval("SELECT version_num FROM alembic_version")  # type: ignore[no-any-return]
        finally:
            await conn.close()

    return asyncio.run(read())


def test_four_concurrent_migrates_migrate_once_and_all_succeed(empty_database: str) -> None:
    """Replicas starting together: each runs the migrations at start, under one advisory lock. The first
    migrates the empty database; the others wait for it, find the schema at head, and change nothing."""
    env = _env(CRM_DATABASE_URL=empty_database)
    procs = [
        subprocess.Popen(_crm("migrate"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        results.append((proc.returncode, err))
    assert [code for code, _ in results] == [0] * 4, results
    migrated = [err for _, err in results if f"migrated the database from empty to {head()}" in err]
    at_head = [err for _, err in results if f"the database is at the newest migration ({head()})" in err]
    assert (len(migrated), len(at_head)) == (1, 3), results
    assert _head_of(empty_database) == head()


def test_no_migrate_refuses_a_schema_older_than_this_version_and_starts_on_a_migrated_one(
    empty_database: str,
) -> None:
    env = _env(CRM_DATABASE_URL=empty_database)
    worker = _crm("worker", "--no-migrate")

    def refused() -> str:
        done = subprocess.run(worker, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        return done.stderr

    assert "the database has no schema yet; run `crm-api migrate`" in refused()
    assert _head_of(empty_database) is None  # nothing was migrated
    subprocess.run(_crm("migrate"), env=env, capture_output=True, text=True, timeout=120, check=True)
    subprocess.run(
        [sys.executable, "-m", "alembic", "downgrade", "-1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    older = _head_of(empty_database)
    assert older is not None and older != head()
    assert f"the database is at migration {older}, this version needs {head()}" in refused()
    subprocess.run(_crm("migrate"), env=env, capture_output=True, text=True, timeout=120, check=True)
    started = subprocess.Popen(worker, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert started.stderr is not None
        assert "dispatcher process running" in started.stderr.readline()
    finally:
        started.terminate()
        started.communicate(timeout=30)
    assert started.returncode == 0


def _options(help_text: str) -> dict[str, str]:
    """Each ``--option`` of a ``--help`` page with the text describing it."""
    section = help_text.split("options:", 1)[1]
    entries = re.split(r"\n  (?=-)", "\n" + section)
    found = {}
    for entry in entries:
        if m := re.match(r"(?:-\w, )?(--[\w-]+)", entry.strip()):
            found[m[1]] = " ".join(entry.split())
    return found


def test_help_describes_every_option_with_its_default() -> None:
    top = subprocess.run(_crm("--help"), env=_env(), capture_output=True, text=True, timeout=60)
    assert top.returncode == 0, top.stderr
    commands = ["serve", "worker", "migrate", "openapi", "create-key"]
    for name in commands:
        assert f"\n    {name}" in top.stdout, top.stdout
    seen = set()
    for name in commands:
        page = subprocess.run(_crm(name, "--help"), env=_env(), capture_output=True, text=True, timeout=60)
        assert page.returncode == 0, page.stderr
        options = _options(page.stdout)
        options.pop("--help")
        for option, text in options.items():
            seen.add(option)
            assert "(default:" in text or "(required)" in text, f"{name} {option}: {text}"
    assert {"--data-dir", "--no-migrate", "--host", "--port", "--workers", "--scopes"} <= seen


def test_version_prints_the_package_version() -> None:
    done = subprocess.run(_crm("--version"), env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"crm-api {crm_api.__version__}"


def test_create_key_says_it_reuses_the_embedded_server_serve_started(data_home: Path) -> None:
    """``--data-dir`` picks the embedded server's home; a second command on the same home joins the running
    server, says so, and leaves it running for serve; no command prints the XDG_RUNTIME_DIR warning."""
    data = data_home / "elsewhere"
    port = _free_port()
    env = _env(CRM_RUN_DISPATCHER="false")
    env.pop("XDG_RUNTIME_DIR", None)
    serve = subprocess.Popen(
        _crm("serve", "--data-dir", str(data), "--port", str(port)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stdout is not None
        assert serve.stdout.readline().startswith("crm_")  # the first start's admin key
        _wait_for(f"http://127.0.0.1:{port}/health")
        done = subprocess.run(
            _crm("create-key", "--data-dir", str(data), "--workspace", "default", "--scopes", "*"),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert f"using the embedded PostgreSQL already running in {data / 'pgdata'}" in done.stderr
        assert f"used by crm-api pid {serve.pid}" in done.stderr
        assert "XDG_RUNTIME_DIR" not in done.stderr and "Warning" not in done.stderr, done.stderr
        key = done.stdout.strip().splitlines()[-1]
        # the key is in the database serve answers from, and serve's PostgreSQL is still up
        r = httpx.get(f"http://127.0.0.1:{port}/v1/contacts", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
    finally:
        serve.terminate()
        _, err = serve.communicate(timeout=30)
    assert f"starting embedded PostgreSQL in {data / 'pgdata'}" in err
    assert "XDG_RUNTIME_DIR" not in err, err
    pidfile = data / "pgdata" / "postmaster.pid"
    deadline = time.monotonic() + 30
    while pidfile.exists():
        assert time.monotonic() < deadline, "embedded PostgreSQL left running"
        time.sleep(0.2)


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url).raise_for_status()
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{url} did not come up"
            time.sleep(0.2)
