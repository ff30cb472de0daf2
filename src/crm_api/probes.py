"""What an orchestrator and a monitoring system ask: ``/livez``, ``/readyz`` and ``/metrics``; no API key.

- ``/livez``: the process answers (restart it if not). Touches nothing else, so a database outage never
  gets healthy processes restarted.
- ``/readyz``: the database answers and its schema is the one this code was written for (send traffic if
  so). A database at a revision this code does not know is taken as newer: migrations run before a rolling
  start, and the old processes must keep serving until they are replaced.
- ``/metrics``: Prometheus text (``metrics.py``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import Any, Literal

import asyncpg
from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from . import metrics, migrate
from .db import EnginePool
from .errors import PROBLEM_JSON, Unavailable

log = logging.getLogger("crm_api.probes")

READY_TIMEOUT_SECONDS = 5.0
_DATABASE_ERRORS = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


class Liveness(BaseModel):
    status: Literal["live"] = "live"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    migration: str
    """The database's schema revision."""


@functools.cache
def _revisions() -> tuple[frozenset[str], frozenset[str]]:
    """This code's migration heads, and every revision it knows."""
    script = ScriptDirectory.from_config(migrate.alembic_config(""))
    return frozenset(script.get_heads()), frozenset(r.revision for r in script.walk_revisions())


async def _database_revision(pool: EnginePool) -> str | None:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            rows = await pool.fetch("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return None
    except _DATABASE_ERRORS as exc:
        log.warning("readiness: the database did not answer: %s", type(exc).__name__)
        raise Unavailable(f"The database did not answer ({type(exc).__name__})") from None
    return ",".join(sorted(r["version_num"] for r in rows)) or None


_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "Not ready; Retry-After says when to ask again",
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
}


def router(measures: Sequence[metrics.ScrapeGauges] = ()) -> APIRouter:
    """The probes, with the gauges measured at each scrape (the webhook outbox's)."""
    probes = APIRouter(tags=["operations"])

    @probes.get(
        "/livez",
        operation_id="health_live",
        summary="Is the process up",
        description="Answers 200 while the process runs; it asks nothing of the database.",
        response_model=Liveness,
        openapi_extra={"security": []},
    )
    async def livez() -> Liveness:
        return Liveness()

    @probes.get(
        "/readyz",
        operation_id="health_ready",
        summary="Can the process serve requests",
        description="200 when the database answers and its schema is at this release's newest migration "
        "(or at a newer one); otherwise 503 with Retry-After.",
        response_model=Readiness,
        responses=_UNAVAILABLE,
        openapi_extra={"security": []},
    )
    async def readyz(request: Request) -> Readiness:
        revision = await _database_revision(request.app.state.db.pool)
        heads, known = await asyncio.to_thread(_revisions)
        if revision is None:
            raise Unavailable("The database has no schema yet: run `crm-api migrate`")
        if revision not in heads and set(revision.split(",")) <= known:
            raise Unavailable(
                f"The database is at migration {revision}, not {', '.join(sorted(heads))}: "
                "run `crm-api migrate`"
            )
        return Readiness(migration=revision)

    @probes.get("/metrics", include_in_schema=False)
    async def scrape(request: Request) -> Response:
        pool: EnginePool = request.app.state.db.pool
        return Response(
            await metrics.render(pool, [_tolerant(m) for m in measures]), media_type=metrics.CONTENT_TYPE
        )

    return probes


def _tolerant(measure: metrics.ScrapeGauges) -> metrics.ScrapeGauges:
    """A measure the database cannot answer is left out of the scrape, not the scrape's failure."""

    async def measured(pool: EnginePool) -> list[metrics.ScrapeGauge]:
        try:
            return list(await measure(pool))
        except _DATABASE_ERRORS as exc:
            log.warning("metrics: a measure failed: %s", type(exc).__name__)
            return []

    return measured
