"""Prometheus metrics: what is counted, and the ``/metrics`` text across worker processes.

Under ``serve`` and ``worker`` every process writes its metrics to files in ``PROMETHEUS_MULTIPROC_DIR`` (see
``multiproc.py``) and a scrape, whichever process answers it, adds up all of them: counters and histograms
summed over every process that ever ran, the pool gauges over the live ones. Without that directory (an app
made in a test) the process's own registry is served.

Costs: a request records one histogram sample (two writes to a memory-mapped file); the pool gauges are
sampled once a second and at each scrape rather than at every checkout; the webhook outbox is measured at
scrape time by one statement (``ScrapeGauges``), never on a request's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .db import EnginePool

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
"""Decided when prometheus_client was first imported, as it decides its own storage then."""

REQUEST_SECONDS = Histogram(
    "crm_http_request_duration_seconds",
    "HTTP requests by route template, method and status: time from the request to the last byte sent "
    "(its _count is the number of requests)",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
POOL_IN_USE = Gauge(
    "crm_db_pool_connections_in_use",
    "Database connections checked out of the pools",
    multiprocess_mode="livesum",
)
POOL_WAITING = Gauge(
    "crm_db_pool_checkouts_waiting",
    "Checkouts waiting for a database connection (the pools are full)",
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "crm_db_pool_size",
    "Database connections the pools may hold (CRM_POOL_SIZE each)",
    multiprocess_mode="livesum",
)
DELIVERIES = Counter(
    "crm_webhook_deliveries",
    "Webhook delivery attempts by outcome: succeeded, retry (failed, tried again later), failed (given up)",
    ["outcome"],
)
CLAIM_SECONDS = Histogram(
    "crm_webhook_claim_duration_seconds",
    "Time the dispatcher's claim of due deliveries takes",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SLA_RUNS = Counter("crm_sla_job_runs", "Runs of the SLA breach job by outcome (ok, error)", ["outcome"])
SLA_BREACHES = Counter(
    "crm_sla_breaches_emitted", "ticket.sla_breached events emitted, by target", ["target"]
)

# Client-chosen methods would make labels without end: others count as OTHER.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_request_children: dict[tuple[str, str, int], Any] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    key = (route, method, status)
    child = _request_children.get(key)
    if child is None:  # labels() validates and locks: done once per label set
        labels = (route, method if method in _METHODS else "OTHER", str(status))
        child = _request_children[key] = REQUEST_SECONDS.labels(*labels)
    child.observe(seconds)


def sample_pool(pool: EnginePool) -> None:
    POOL_IN_USE.set(pool.in_use())
    POOL_WAITING.set(pool.waiting)
    POOL_SIZE.set(pool.size)


async def sample_pool_forever(pool: EnginePool, every_seconds: float = 1.0) -> None:
    """This process's pool, into the gauges every scrape adds up (a scrape samples its own process too)."""
    while True:
        sample_pool(pool)
        await asyncio.sleep(every_seconds)


def process_exit() -> None:
    """Take this process out of the pool gauges (a process that dies unannounced is found at the next
    scrape)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


ScrapeGauge = tuple[str, str, float]
"""A gauge measured at scrape time: name, help, value."""
ScrapeGauges = Callable[[EnginePool], Awaitable[Iterable[ScrapeGauge]]]


class _Measured(Collector):
    def __init__(self, gauges: Iterable[ScrapeGauge]) -> None:
        self.gauges = list(gauges)

    def collect(self) -> Iterator[Metric]:
        for name, help_text, value in self.gauges:
            yield GaugeMetricFamily(name, help_text, value=value)


_processes_registry: CollectorRegistry | None = None


def _registry() -> CollectorRegistry:
    global _processes_registry
    if not MULTIPROCESS:
        return REGISTRY
    if _processes_registry is None:
        _processes_registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(_processes_registry)  # type: ignore[no-untyped-call]
    return _processes_registry


def serve_http(host: str, port: int) -> None:
    """``/metrics`` of this process and its children on a port of its own, from a thread (``crm-api worker``:
    the dispatchers' deliveries, claims, SLA runs and pools; the outbox gauges come from the API's)."""
    start_http_server(port, host, registry=_registry())


def _forget_dead_processes() -> None:
    """Worker processes killed without their shutdown still have pool gauge files: drop them."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(path):
        if not (name.startswith("gauge_live") and name.endswith(".db")):
            continue
        pid = int(name.rsplit("_", 1)[1].removesuffix(".db"))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
        except PermissionError:  # alive, another user's
            pass


async def render(pool: EnginePool, measures: Iterable[ScrapeGauges]) -> bytes:
    """The text of one scrape: every process's metrics, then the gauges measured now."""
    sample_pool(pool)
    measured: list[ScrapeGauge] = []
    for measure in measures:
        measured.extend(await measure(pool))
    if MULTIPROCESS:
        with contextlib.suppress(OSError):
            _forget_dead_processes()
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Measured(measured))
    return generate_latest(_registry()) + generate_latest(scrape)
