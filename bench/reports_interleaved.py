"""Two API servers answering the same reports (the old code on one copy of the bench database, the new on
another), one request to each in turn: the answers compared, and each side's p50. On a shared machine the
load moves under any measurement; in turns, both sides see the same load.

    python bench/reports_interleaved.py --old-port 18941 --new-port 18942 --key KEY [--runs 15] [--only sales]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

from httpclient import Connection
from reports import AGGREGATES, QUERIES

# what depends on the moment asked (now()): a stay not over counts until now; the customers' as_of is now
_MOMENTARY = {"median_days_in_stage", "mean_days_in_stage", "as_of"}


def _stable(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: _stable(v) for k, v in body.items() if k not in _MOMENTARY}
    if isinstance(body, list):
        return [_stable(v) for v in body]
    return body


async def main(old_port: int, new_port: int, key: str, runs: int, only: list[str]) -> None:
    sides = {"old": Connection("127.0.0.1", old_port, key), "new": Connection("127.0.0.1", new_port, key)}
    print(f"load average {os.getloadavg()}")
    calls = [(name, "GET", path, None) for name, path in QUERIES.items()]
    calls += [(name, "POST", path, payload) for name, (path, payload) in AGGREGATES.items()]
    for name, method, path, payload in calls:
        if only and not any(o in name for o in only):
            continue
        headers = {"Accept": "text/csv"} if "CSV" in name else None
        times: dict[str, list[float]] = {"old": [], "new": []}
        bodies: dict[str, bytes] = {}
        for i in range(runs + 2):
            for side, conn in sides.items() if i % 2 else reversed(sides.items()):
                began = time.perf_counter()
                status, body = await conn.request(method, path, payload, headers=headers)
                took = (time.perf_counter() - began) * 1000
                assert status == 200, (side, name, body[:200])
                bodies[side] = body
                if i >= 2:  # the first two prepare the statements
                    times[side].append(took)
        if headers:
            same = bodies["old"] == bodies["new"]
        else:
            same = _stable(json.loads(bodies["old"])) == _stable(json.loads(bodies["new"]))
        print(
            f"{name:45s} old p50 {statistics.median(times['old']):7.1f} ms   "
            f"new p50 {statistics.median(times['new']):7.1f} ms   answers {'same' if same else 'DIFFER'}"
        )
    print(f"load average {os.getloadavg()}")
    for conn in sides.values():
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--old-port", type=int, required=True)
    parser.add_argument("--new-port", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--only", action="append", default=[])
    args = parser.parse_args()
    asyncio.run(main(args.old_port, args.new_port, args.key, args.runs, args.only))
