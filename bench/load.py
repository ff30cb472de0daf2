"""Load generator: N keep-alive clients for T seconds per operation; requests/s, p50 and p99 per operation.

    python bench/load.py --port 8000 --key KEY --clients 16 --seconds 10 [--json out.json]

Operations: create (with an Idempotency-Key, so with its idempotency record and event row), get, list
(a page of 50), filtered list (lifecycle_stage, a page of 50), update (PATCH of a random seeded contact).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import workers
from httpclient import Connection

Op = Callable[[Connection], Awaitable[int]]


async def sample_ids(host: str, port: int, key: str, n: int = 2000) -> list[str]:
    conn = Connection(host, port, key)
    ids: list[str] = []
    cursor = ""
    while len(ids) < n:
        _status, body = await conn.request("GET", f"/v1/contacts?limit=200{cursor}")
        page = json.loads(body)
        ids += [c["id"] for c in page["data"]]
        if not page["has_more"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    await conn.close()
    return ids


def operations(ids: list[str]) -> dict[str, Op]:
    run = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))

    async def create(c: Connection) -> int:
        n = next(counter)
        body = {"email": f"load-{run}-{n}@example.com", "first_name": "Load", "lifecycle_stage": "lead"}
        status, _ = await c.request("POST", "/v1/contacts", body, {"Idempotency-Key": f"{run}-{n}"})
        return status

    async def get(c: Connection) -> int:
        return (await c.request("GET", f"/v1/contacts/{random.choice(ids)}"))[0]

    async def list_(c: Connection) -> int:
        return (await c.request("GET", "/v1/contacts?limit=50"))[0]

    async def filtered(c: Connection) -> int:
        return (await c.request("GET", "/v1/contacts?limit=50&lifecycle_stage=customer"))[0]

    async def update(c: Connection) -> int:
        body = {"title": f"T{random.randrange(10**6)}"}
        return (await c.request("PATCH", f"/v1/contacts/{random.choice(ids)}", body))[0]

    return {"create": create, "get": get, "list": list_, "filtered_list": filtered, "update": update}


async def run(host: str, port: int, key: str, op: Op, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        conn = Connection(host, port, key)
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            status = await op(conn)
            latencies.append(time.perf_counter() - began)
            if status >= 400:
                errors += 1
        await conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    took = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / took, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "errors": errors}


async def main_async(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    ids = await sample_ids(args.host, args.port, args.key)
    ops = operations(ids)
    chosen = args.ops.split(",") if args.ops else list(ops)
    results = {}
    for name in chosen:
        before = workers.served(args.metrics_dir) if args.metrics_dir else {}
        results[name] = await run(args.host, args.port, args.key, ops[name], args.clients, args.seconds)
        r = results[name]
        split = ""
        if args.metrics_dir:  # requests per worker process, so an imbalance shows
            per = workers.shares(before, workers.served(args.metrics_dir))
            results[name]["per_worker"] = per  # type: ignore[assignment]
            split = "   per worker " + " / ".join(f"{n:,}" for n in per)
        print(f"{name:14} {r['rps']:8.0f} req/s   p50 {r['p50_ms']:6.1f} ms   p99 {r['p99_ms']:6.1f} ms"
              f"   errors {r['errors']:.0f}{split}", flush=True)  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--key", required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--ops", default="", help="comma-separated subset of create,get,list,filtered_list,update"
    )
    parser.add_argument("--json", default="")
    parser.add_argument(
        "--metrics-dir", default="", help="the server's CRM_METRICS_DIR: print requests per worker process"
    )
    args = parser.parse_args()
    print(f"{args.clients} clients, {args.seconds:.0f} s per operation")
    results = asyncio.run(main_async(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
