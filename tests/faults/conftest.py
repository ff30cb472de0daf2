"""The fault suite runs on a PostgreSQL cluster of its own (embedded, on a unix socket), since it stops and
starts it, fills its locks and installs failing triggers: never the shared test server."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from faultkit import Cluster

DATABASE = "crm"


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    # Not under pytest's tmp dirs: another pytest run by the same user resets those to 0700, which locks out
    # the unprivileged user the embedded PostgreSQL runs as.
    path = Path(tempfile.mkdtemp(prefix="crm-test-faults-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster(workdir: Path) -> Iterator[Cluster]:
    owned = Cluster(workdir)
    asyncio.run(owned.execute("postgres", f'CREATE DATABASE "{DATABASE}"'))
    try:
        yield owned
    finally:
        owned.close()


@pytest.fixture(scope="session")
def crm_url(cluster: Cluster) -> str:
    """The cluster's database (``crm-api serve`` migrates it on start)."""
    return cluster.url(DATABASE)
