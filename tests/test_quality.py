"""The static checks run as part of the suite, so the README's one test command is all CI needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from crm_api.migrate import alembic_config, head

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(
    "command",
    [("ruff", "check", "."), ("ruff", "format", "--check", "."), ("mypy",)],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_static_check(command: tuple[str, ...]) -> None:
    result = _run(*command)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_layering() -> None:
    """The import-linter contracts in pyproject.toml: domains build on resources/, which never imports a
    domain; events/ and the kernel sit below; no import circles. Checked on this tree's sources."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(ROOT, "src")), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
            "--no-cache",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alembic_check_is_clean(database_url: str) -> None:
    """The models and the migrations describe the same schema."""
    from alembic import command

    command.check(alembic_config(database_url))


def test_the_alembic_command_and_the_package_use_the_same_migrations(database_url: str) -> None:
    """alembic.ini at the root (for `alembic revision`, `history`, ...) names the directory the package ships
    and crm_api.migrate runs: the alembic command finds the test database at head."""
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "current"],
        cwd=ROOT,
        env={**os.environ, "CRM_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"{head()} (head)" in result.stdout, result.stdout + result.stderr
    config = Config(str(ROOT / "alembic.ini"))
    shipped = Path(ROOT, "src", "crm_api", "migrations")
    assert ScriptDirectory.from_config(config).dir == str(shipped)
    assert ScriptDirectory.from_config(alembic_config(database_url)).dir == str(shipped)
    assert any(Path(shipped, "versions").glob("*.py"))
