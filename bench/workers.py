"""Requests served per API worker process, read from the workers' metric files.

``crm-api serve`` keeps each process's metrics in its own file (``histogram_<pid>.db``) in the metrics
directory (``CRM_METRICS_DIR``); the request-duration histogram's count in one file is what that worker
served. ``bench/load.py --metrics-dir DIR`` prints the share of each worker per operation, so an imbalance
(one worker holding most keep-alive connections) shows next to the figures. Nothing is added to responses.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client.multiprocess import MultiProcessCollector

_COUNT = "crm_http_request_duration_seconds_count"


def served(metrics_dir: str) -> dict[int, int]:
    """Requests counted so far by each worker process (by pid)."""
    counts: dict[int, int] = {}
    for path in Path(metrics_dir).glob("histogram_*.db"):
        pid = path.stem.removeprefix("histogram_")
        if not pid.isdigit():
            continue
        total = 0.0
        for metric in MultiProcessCollector.merge([str(path)], accumulate=True):
            total += sum(s.value for s in metric.samples if s.name == _COUNT)
        counts[int(pid)] = int(total)
    return counts


def shares(before: dict[int, int], after: dict[int, int]) -> list[int]:
    """Requests each worker served between two readings, largest first."""
    served = (n - before.get(pid, 0) for pid, n in after.items())
    return sorted((n for n in served if n > 0), reverse=True)
