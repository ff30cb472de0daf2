"""Run the alembic migrations from code (the CLI, the server's start, the test suite)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config

# The directory holding alembic.ini and migrations/: this source tree, or CRM_HOME when the package is
# installed apart from them (the Docker image installs it into site-packages and keeps them in /app).
ROOT = Path(os.environ.get("CRM_HOME") or Path(__file__).resolve().parents[2])


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["url"] = url
    return config


def upgrade(url: str) -> None:
    command.upgrade(alembic_config(url), "head")
