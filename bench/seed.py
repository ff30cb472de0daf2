"""Seed contacts through the batch endpoint: 500 per request, a few requests in flight.

python bench/seed.py --url http://127.0.0.1:8000 --key KEY --count 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from httpclient import Connection

STAGES = ("subscriber", "lead", "customer", "opportunity")


def items(start: int, n: int, run: str) -> list[dict[str, object]]:
    return [
        {
            "email": f"seed-{run}-{i}@example.com",
            "first_name": f"First{i}",
            "last_name": f"Last{i % 997}",
            "lifecycle_stage": STAGES[i % len(STAGES)],
            "tags": ["vip"] if i % 10 == 0 else [],
            "custom_fields": {"plan": "pro" if i % 3 else "free", "seats": i % 50},
        }
        for i in range(start, start + n)
    ]


async def seed(host: str, port: int, key: str, count: int, parallel: int) -> float:
    run = uuid.uuid4().hex[:6]
    batches = [(s, min(500, count - s)) for s in range(0, count, 500)]
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def worker() -> None:
        conn = Connection(host, port, key)
        while not queue.empty():
            start, n = queue.get_nowait()
            status, body = await conn.request("POST", "/v1/contacts/batch", {"items": items(start, n, run)})
            assert status == 200, body[:300]
            bad = [r for r in json.loads(body)["results"] if r["status"] != 201]
            assert not bad, bad[:2]
        await conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(parallel)))
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--key", required=True)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    took = asyncio.run(seed(args.host, args.port, args.key, args.count, args.parallel))
    print(f"seeded {args.count} contacts in {took:.1f} s ({args.count / took:,.0f} rows/s)")


if __name__ == "__main__":
    main()
