"""``include=`` against the plain list: a page of 50 deals, and the same page with its contact and company
(two relations, one statement each), alternated in rounds so both see the same machine.

    python bench/includes.py --port 8000 --key KEY --clients 4 --seconds 5 [--deals 2000] [--rounds 3]

It seeds ``--deals`` deals through the batch endpoint first, each with its own contact and company (so a
page names 50 of each, the most it can). Prints each operation's requests/s, p50 and p99 per round, and
the ratio of the p50s (the issue's bar: at most 1.5).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import uuid

from httpclient import Connection
from load import Op, run


async def setup(host: str, port: int, key: str, count: int) -> None:
    conn = Connection(host, port, key)
    run_id = uuid.uuid4().hex[:8]
    for start in range(0, count, 500):
        numbers = range(start, min(start + 500, count))
        companies = [{"name": f"co-{run_id}-{n}", "domain": f"co-{run_id}-{n}.example"} for n in numbers]
        contacts = [{"email": f"p-{run_id}-{n}@example.com"} for n in numbers]
        _s, made = await conn.request("POST", "/v1/companies/batch", {"items": companies})
        company_ids = [r["object"]["id"] for r in json.loads(made)["results"]]
        _s, made = await conn.request("POST", "/v1/contacts/batch", {"items": contacts})
        contact_ids = [r["object"]["id"] for r in json.loads(made)["results"]]
        deals = [
            {"name": f"deal-{run_id}-{n}", "contact_id": person, "company_id": company}
            for n, person, company in zip(numbers, contact_ids, company_ids, strict=True)
        ]
        await conn.request("POST", "/v1/deals/batch", {"items": deals})
    await conn.close()


def operations() -> dict[str, Op]:
    async def plain(c: Connection) -> int:
        return (await c.request("GET", "/v1/deals?limit=50"))[0]

    async def included(c: Connection) -> int:
        return (await c.request("GET", "/v1/deals?limit=50&include=contact,company"))[0]

    return {"deal_list": plain, "deal_list_include_2": included}


async def main_async(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    await setup(args.host, args.port, args.key, args.deals)
    ops = operations()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in ops}
    for round_ in range(args.rounds):
        for name, op in ops.items():
            r = await run(args.host, args.port, args.key, op, args.clients, args.seconds)
            results[name].append(r)
            print(f"round {round_ + 1} {name:20} {r['rps']:7.0f} req/s   p50 {r['p50_ms']:6.2f} ms"
                  f"   p99 {r['p99_ms']:6.2f} ms   errors {r['errors']:.0f}", flush=True)  # fmt: skip
    plain = statistics.median(r["p50_ms"] for r in results["deal_list"])
    included = statistics.median(r["p50_ms"] for r in results["deal_list_include_2"])
    print(f"p50 (median of rounds): plain {plain:.2f} ms, include=contact,company {included:.2f} ms, "
          f"ratio {included / plain:.2f}")  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--key", required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--deals", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    print(f"{args.clients} clients, {args.seconds:.0f} s per operation and round, {args.deals} seeded deals")
    results = asyncio.run(main_async(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
