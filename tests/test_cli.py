"""The command line, run as a newcomer runs it: real processes, real databases."""

from __future__ import annotations

import asyncio
import os
import pty
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


def test_a_configured_database_without_a_master_key_is_refused(database_url: str) -> None:
    """Processes on several hosts cannot each make a key of their own: CRM_SECRET_KEY is required."""
    for command in ("serve", "worker"):
        done = subprocess.run(
            [sys.executable, "-m", "crm_api", command],
            env=_env(CRM_DATABASE_URL=database_url),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert "CRM_SECRET_KEY is required" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "crm_api", "worker"],
        env=_env(CRM_DATABASE_URL=database_url, CRM_SECRET_KEY="not-a-key"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "not a master key" in done.stderr, done.stderr


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


def test_serve_on_a_bare_machine_starts_embedded_postgres_and_keeps_its_keys_in_private_files(
    data_home: Path,
) -> None:
    """No CRM_DATABASE_URL: the server starts its own PostgreSQL, migrates, and writes the first start's admin
    key to a file only its owner reads. Its stdout is a pipe (as under Docker or systemd, where stdout is the
    log): the key is not printed. The master key is made in the data dir too, and rotates in place."""
    tmp_path = data_home
    data = tmp_path / "data"
    port = _free_port()
    env = _env(CRM_DATA_DIR=str(data), CRM_RUN_DISPATCHER="false", CRM_WEBHOOK_ALLOW_CIDRS="127.0.0.0/8")
    cmd = [sys.executable, "-m", "crm_api", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (data / "admin-key").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no admin key file"
            time.sleep(0.2)
        key = (data / "admin-key").read_text().strip()
        assert key.startswith("crm_"), key
        for private in ("admin-key", "secret.key"):
            assert (data / private).stat().st_mode & 0o777 == 0o600, private
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
        hook = httpx.post(
            f"http://127.0.0.1:{port}/v1/webhooks",
            headers={"Authorization": f"Bearer {key}"},
            json={"url": "http://127.0.0.1:9/hook", "event_types": ["*"]},
        )
        assert hook.status_code == 201, hook.text
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert key not in out + err
    assert str(data / "admin-key") in err
    # The master key rotates in place: the file holds the new key alone, and the next start opens with it.
    master = (data / "secret.key").read_text()
    rotate = [sys.executable, "-m", "crm_api", "secrets", "rotate"]
    done = subprocess.run(rotate, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "sealed 1 webhook endpoints' secrets" in done.stderr
    rotated = (data / "secret.key").read_text()
    assert rotated != master and len(rotated.split()) == 1
    assert (data / "secret.key").stat().st_mode & 0o777 == 0o600
    # A second start reuses the data, opens the secrets with the rotated key, and makes no new admin key.
    (data / "admin-key").unlink()
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
                assert proc.poll() is None, "the second start failed"
                assert time.monotonic() < deadline, "server did not come up again"
                time.sleep(0.2)
        assert r.status_code == 200
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "crm_" not in out and not (data / "admin-key").exists()
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
    env = _env(CRM_DATABASE_URL=empty_database, CRM_SECRET_KEY=os.environ["CRM_SECRET_KEY"])
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
        _wait_for(f"http://127.0.0.1:{port}/health")
        # the first start's admin key, in its file (stdout is not a terminal)
        assert (data / "admin-key").read_text().startswith("crm_")
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


@pytest.fixture
def fresh_database(database_url: str) -> Iterator[str]:
    """A database of its own, where no ``default`` workspace exists yet."""
    dsn, kwargs = asyncpg_dsn(database_url)
    name = f"crm_test_first_{os.getpid()}_{int(time.time() * 1000) % 100000}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(dsn, **kwargs)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base, _, query = database_url.partition("?")
    yield f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_serve_prints_the_first_admin_key_when_stdout_is_a_terminal(
    fresh_database: str, tmp_path: Path
) -> None:
    """At a terminal (someone trying it out) the key is printed too, as well as written to the file."""
    leader, follower = pty.openpty()
    env = _env(
        CRM_DATABASE_URL=fresh_database,
        CRM_SECRET_KEY=os.environ["CRM_SECRET_KEY"],
        CRM_DATA_DIR=str(tmp_path),
        CRM_RUN_DISPATCHER="false",
    )
    cmd = [sys.executable, "-m", "crm_api", "serve", "--port", str(_free_port())]
    proc = subprocess.Popen(cmd, env=env, stdout=follower, stderr=subprocess.PIPE, text=True)
    os.close(follower)
    try:
        seen = b""
        deadline = time.monotonic() + 60
        while b"\n" not in seen:
            assert proc.poll() is None and time.monotonic() < deadline, seen
            seen += os.read(leader, 1024)
        printed = seen.decode().strip()
        assert printed.startswith("crm_") and printed == (tmp_path / "admin-key").read_text().strip()
        assert (tmp_path / "admin-key").stat().st_mode & 0o777 == 0o600
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        os.close(leader)
