"""A regular install, as the Docker image makes it: the locked runtime dependencies (hash-checked), then the
wheel, not editable, in a clean virtualenv. Run from a directory with no source tree, it migrates an empty
database and serves: the migrations travel inside the package."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

from crm_api.migrate import head

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str | Path], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout}\n{done.stderr}"
    return done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_wheel_installs_into_a_clean_venv_and_migrates_and_serves(
    empty_database: str, tmp_path: Path
) -> None:
    # pip's own settings (indexes, caches) stay; nothing may lead Python back to this source tree
    pip_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # build from a copy, so the build leaves nothing in the working tree
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dist, tree], 300, env=pip_env)
    (wheel,) = dist.glob("crm_api-*.whl")
    shipped = zipfile.ZipFile(wheel).namelist()
    assert "crm_api/migrations/env.py" in shipped
    assert any(n.startswith("crm_api/migrations/versions/") for n in shipped)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], 120, env=pip_env)
    python = venv / "bin" / "python"
    pip = [python, "-m", "pip", "install", "-q"]
    _run([*pip, "--require-hashes", "-r", ROOT / "requirements.lock"], 900, env=pip_env)
    _run([*pip, "--no-deps", wheel], 300, env=pip_env)

    home = tmp_path / "elsewhere"
    home.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "CRM_DATABASE_URL": empty_database,
        "CRM_RUN_DISPATCHER": "false",
        "CRM_SECRET_KEY": os.environ["CRM_SECRET_KEY"],
        "CRM_DATA_DIR": str(home / "data"),
    }
    where = _run([python, "-c", "import crm_api; print(crm_api.__file__)"], 60, env=env, cwd=home)
    assert where.stdout.startswith(str(venv / "lib")), where.stdout

    migrated = _run([venv / "bin" / "crm-api", "migrate"], 120, env=env, cwd=home)
    assert f"migrated the database from empty to {head()}" in migrated.stderr, migrated.stderr

    port = _free_port()
    serve = subprocess.Popen(
        [venv / "bin" / "crm-api", "serve", "--port", str(port)],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health")
                break
            except httpx.TransportError:
                assert serve.poll() is None, serve.communicate()[1]
                assert time.monotonic() < deadline, "the installed server did not come up"
                time.sleep(0.2)
        assert health.status_code == 200
        # the first start's admin key, in its file in the data dir (stdout is not a terminal)
        key = (home / "data" / "admin-key").read_text().strip()
        assert key.startswith("crm_"), key
        contacts = httpx.get(
            f"http://127.0.0.1:{port}/v1/contacts", headers={"Authorization": f"Bearer {key}"}
        )
        assert contacts.status_code == 200, contacts.text
    finally:
        serve.terminate()
        _, err = serve.communicate(timeout=30)
    assert serve.returncode == 0, err
    assert f"the database is at the newest migration ({head()})" in err


def test_the_dockerfile_installs_as_this_test_does() -> None:
    """No Docker engine here: the image's install steps are held to the ones tested above."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    steps = [line.strip() for line in dockerfile.splitlines() if line.startswith("RUN ")]
    assert "RUN pip install --require-hashes -r /tmp/requirements.lock && rm /tmp/requirements.lock" in steps
    assert "RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels" in steps
    assert not any(" -e " in step or "--editable" in step for step in steps)
    assert "\nHEALTHCHECK " in dockerfile
    assert "crm-api migrate" in dockerfile  # the one-off step before a rolling start
