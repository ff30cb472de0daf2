"""Deal load: create (with an Idempotency-Key: idempotency record, event, stage-history row) and stage move
(PATCH stage_id: stage rules, stage_changed/won/lost events, history row), plus get, a stage-filtered list,
the stage history and the timeline (a page of 50) of a deal.

    python bench/sales.py --port 8000 --key KEY --clients 16 --seconds 10 [--deals 2000] [--json out.json]

It seeds ``--deals`` deals through the batch endpoint first, so the moves have deals to act on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import uuid

from httpclient import Connection
from load import Op, run


async def setup(host: str, port: int, key: str, count: int) -> tuple[list[str], list[str]]:
    conn = Connection(host, port, key)
    _status, body = await conn.request("GET", "/v1/pipelines")
    pipeline = next(p for p in json.loads(body)["data"] if p["is_default"])
    stages = [s["id"] for s in pipeline["stages"]]
    ids: list[str] = []
    run_id = uuid.uuid4().hex[:8]
    for start in range(0, count, 500):
        items = [
            {
                "name": f"seed-{run_id}-{n}",
                "amount": "1000.00",
                "currency": "EUR",
                "stage_id": random.choice(stages),
            }
            for n in range(start, min(start + 500, count))
        ]
        _status, body = await conn.request("POST", "/v1/deals/batch", {"items": items})
        ids += [r["object"]["id"] for r in json.loads(body)["results"] if r["status"] == 201]
    await conn.close()
    return ids, stages


def operations(ids: list[str], stages: list[str]) -> dict[str, Op]:
    run_id = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))

    async def create(c: Connection) -> int:
        n = next(counter)
        body = {"name": f"load-{run_id}-{n}", "amount": "2500.00", "currency": "EUR", "source": "bench"}
        status, _ = await c.request("POST", "/v1/deals", body, {"Idempotency-Key": f"deal-{run_id}-{n}"})
        return status

    async def move(c: Connection) -> int:
        body = {"stage_id": random.choice(stages)}
        return (await c.request("PATCH", f"/v1/deals/{random.choice(ids)}", body))[0]

    async def get(c: Connection) -> int:
        return (await c.request("GET", f"/v1/deals/{random.choice(ids)}"))[0]

    async def by_stage(c: Connection) -> int:
        return (await c.request("GET", f"/v1/deals?limit=50&stage_id={random.choice(stages)}"))[0]

    async def history(c: Connection) -> int:
        return (await c.request("GET", f"/v1/deals/{random.choice(ids)}/stage-history"))[0]

    async def timeline(c: Connection) -> int:
        return (await c.request("GET", f"/v1/deals/{random.choice(ids)}/timeline?limit=50"))[0]

    return {
        "deal_create": create,
        "deal_stage_move": move,
        "deal_get": get,
        "deal_list_by_stage": by_stage,
        "deal_stage_history": history,
        "deal_timeline": timeline,
    }


async def main_async(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    ids, stages = await setup(args.host, args.port, args.key, args.deals)
    ops = operations(ids, stages)
    chosen = args.ops.split(",") if args.ops else list(ops)
    results = {}
    for name in chosen:
        results[name] = await run(args.host, args.port, args.key, ops[name], args.clients, args.seconds)
        r = results[name]
        print(f"{name:20} {r['rps']:8.0f} req/s   p50 {r['p50_ms']:6.1f} ms   p99 {r['p99_ms']:6.1f} ms"
              f"   errors {r['errors']:.0f}", flush=True)  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--key", required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--deals", type=int, default=2000)
    parser.add_argument("--ops", default="", help="comma-separated subset of the operations")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    print(f"{args.clients} clients, {args.seconds:.0f} s per operation, {args.deals} seeded deals")
    results = asyncio.run(main_async(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
