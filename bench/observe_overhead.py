"""What each request pays for being measured and logged: the Observe middleware (one histogram sample in the
memory-mapped files that several workers share, and one JSON log line) around a bare ASGI app, against the
bare app, in a loop (CPU time of this process, so that other load on the machine counts less).

    PYTHONPATH=src python bench/observe_overhead.py [--requests 20000]

Runs with its own PROMETHEUS_MULTIPROC_DIR, as ``crm-api serve`` does, and writes the log lines to
/dev/null (the write itself is a syscall the real server pays too).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from typing import Any

os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="crm-bench-metrics-")

from crm_api import logs
from crm_api.config import Settings
from crm_api.observe import Observe


class _Route:
    path = "/v1/contacts/{id}"


async def bare(scope: Any, receive: Any, send: Any) -> None:
    scope["route"] = _Route()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _loop(app: Any, n: int) -> float:
    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    started = time.process_time()
    for _ in range(n):
        scope = {"type": "http", "method": "GET", "path": "/v1/contacts/1", "headers": [], "state": {}}
        await app(scope, receive, send)
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logs.configure(Settings(log_format="json"))
    handler = logging.getLogger("crm_api").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
    observed = Observe(bare)
    without, logged, metric_only = [], [], []
    for _ in range(args.rounds):
        without.append(asyncio.run(_loop(bare, args.requests)))
        logging.getLogger("crm_api").setLevel(logging.INFO)
        logged.append(asyncio.run(_loop(observed, args.requests)))
        logging.getLogger("crm_api").setLevel(logging.WARNING)
        metric_only.append(asyncio.run(_loop(observed, args.requests)))
    base = statistics.median(without)
    print(f"bare app:                    {base:6.1f} us/request")
    print(f"+ metric sample:             {statistics.median(metric_only) - base:6.1f} us/request")
    print(f"+ metric sample and log line: {statistics.median(logged) - base:6.1f} us/request")


if __name__ == "__main__":
    main()
