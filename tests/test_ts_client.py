"""A TypeScript client generated from the committed spec works: openapi-typescript (default flags) turns
openapi/openapi.json into types, ``tsc --strict`` compiles tests/ts_client/client.ts against them with
openapi-fetch, and node runs it against a real ``crm-api serve`` (create, get with ETag, PATCH with If-Match,
two pages, problem documents read as typed).

The npm packages are pinned in tests/ts_client/package-lock.json and installed with ``npm ci``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import Server, serve

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "tests" / "ts_client"
FILES = ("package.json", "package-lock.json", "tsconfig.json", "client.ts")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (Node.js 20 with npm)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client project, installed from its lock, with its types generated and compiled."""
    npm, npx = _tool("npm"), _tool("npx")
    _tool("node")
    work = tmp_path_factory.mktemp("ts_client")
    for name in FILES:
        shutil.copy(PROJECT / name, work / name)
    _run([npm, "ci", "--no-audit", "--no-fund"], work, timeout=600)
    _run(
        [
            npx,
            "--no-install",
            "openapi-typescript",
            str(ROOT / "openapi" / "openapi.json"),
            "-o",
            "schema.d.ts",
        ],
        work,
    )
    _run([npx, "--no-install", "tsc", "--strict", "-p", "tsconfig.json"], work)
    return work


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[Server]:
    with serve(database_url) as running:
        yield running


def test_the_generated_types_leave_server_defaults_optional(built: Path) -> None:
    """Fields the server fills in are optional in request bodies, present in responses."""
    types = (built / "schema.d.ts").read_text()
    create = types[types.index("        ContactCreate: {") :]
    create = create[: create.index("\n        };")]
    assert "tags?: string[]" in create
    assert "marketing_consent?: boolean" in create
    assert 'lifecycle_stage?: components["schemas"]["LifecycleStage"] | null' in create
    read = types[types.index("        Contact: {") :]
    read = read[: read.index("\n        };")]
    assert "tags: string[]" in read


def test_the_compiled_client_runs_against_a_live_server(built: Path, server: Server) -> None:
    env = dict(os.environ, CRM_URL=server.url, CRM_KEY=server.key)
    out = _run([_tool("node"), "build/client.js"], built, env=env, timeout=120)
    assert "ts client: ok" in out
