"""Lead scoring benchmark on the local PostgreSQL (database ``crm_bench_score``, recreated).

    python bench/scoring.py [--contacts 4000] [--rules 20] [--samples 100]

1. seeds ``--contacts`` contacts (batches of 500) and a call for every fourth one;
2. rule creates, with one ``crm-api worker`` running: ``--rules`` rules (conditions of the kinds marketing
   uses, and activity rules), seconds from the last create until every rule is ``ready`` (the workspace
   rescored in chunks: every contact's score moves, so 4,000 contact writes and events);
3. a rule change: one rule's points edited, seconds until it is ``ready`` again;
4. freshness, with the worker idle: single creates that score, spaced 0.1 s apart; the API's answer to the
   ``contact.score_changed`` event (stamped just before the worker's commit), p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg
from httpclient import Connection
from segments import ENV, PG, STAGES, sh

DB = "crm_bench_score"
URL = f"{PG}/{DB}"
ENV["CRM_DATABASE_URL"] = URL.replace("postgresql://", "postgresql+asyncpg://", 1)


def rule(i: int) -> dict[str, Any]:
    kind = i % 4
    if kind == 0:
        return {
            "points": 5 + i,
            "condition": {"field": "lifecycle_stage", "op": "eq", "value": STAGES[i % 4]},
        }
    if kind == 1:
        return {"points": -3, "condition": {"field": "tags", "op": "contains", "value": f"t{i % 3}"}}
    if kind == 2:
        return {"points": 2, "condition": {"field": "created_at", "op": "gt", "value": f"-{i + 1}d"}}
    return {"activity": {"type": "call", "within_days": 30, "points": 3, "max_points": 9}}


async def _ready(conn: asyncpg.Connection, ws: uuid.UUID) -> float:
    began = time.perf_counter()
    while await conn.fetchval(  # noqa: ASYNC110 - polling the database
        "SELECT count(*) FROM scoring_rules WHERE workspace_id = $1 AND status = 'building'", ws
    ):
        await asyncio.sleep(0.05)
    return time.perf_counter() - began


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    port = 8094
    key = sh("crm-api", "create-key", "--workspace", "bench", "--scopes", "*").strip().splitlines()[-1]
    conn = await asyncpg.connect(URL)
    ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = 'bench'")
    serve = ["crm-api", "serve", "--port", str(port), "--workers", "2"]
    api = subprocess.Popen(serve, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    worker: subprocess.Popen[bytes] | None = None
    try:
        client = Connection("127.0.0.1", port, key)
        for _ in range(600):
            assert api.poll() is None, "crm-api serve exited"
            try:
                await client.request("GET", "/health")
                break
            except OSError:
                client = Connection("127.0.0.1", port, key)
                await asyncio.sleep(0.2)
        for start in range(0, args.contacts, 500):
            items = [
                {"first_name": f"n{i}", "lifecycle_stage": STAGES[i % 4], "tags": [f"t{i % 5}"]}
                for i in range(start, min(start + 500, args.contacts))
            ]
            status, text = await client.request("POST", "/v1/contacts/batch", {"items": items})
            assert status in (200, 207), text[:300]
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM contacts WHERE workspace_id = $1", ws)]
        for start in range(0, len(ids), 4 * 100):
            items = [{"type": "call", "contact_ids": [str(i)]} for i in ids[start : start + 400 : 4]]
            status, text = await client.request("POST", "/v1/activities/batch", {"items": items})
            assert status in (200, 207), text[:300]

        # the worker is up before the rules come, so its start is not counted
        worker = subprocess.Popen(["crm-api", "worker"], env=ENV)  # noqa: ASYNC220
        await asyncio.sleep(5)
        rules = []
        for i in range(args.rules):
            status, text = await client.request("POST", "/v1/scoring-rules", {"name": f"r{i}", **rule(i)})
            assert status == 201, text
            rules.append(json.loads(text)["id"])
        took = await _ready(conn, ws)
        out["rules_created_rescore_seconds"] = round(took, 2)
        out["contacts"] = len(ids)
        print(f"{args.rules} new rules: {len(ids)} contacts rescored in {took:.2f} s", flush=True)
        status, text = await client.request("PATCH", f"/v1/scoring-rules/{rules[0]}", {"points": 42})
        assert status == 200, text
        took = await _ready(conn, ws)
        out["rule_change_rescore_seconds"] = round(took, 2)
        print(f"a rule change: {len(ids)} contacts rescored in {took:.2f} s", flush=True)

        sent: dict[uuid.UUID, float] = {}
        for n in range(args.samples):
            body = {"first_name": f"fresh{n}", "lifecycle_stage": STAGES[0]}
            status, text = await client.request("POST", "/v1/contacts", body)
            sent[uuid.UUID(json.loads(text)["id"])] = time.time()
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)
        rows = await conn.fetch(
            "SELECT object_id, min(created_at) AS at FROM events WHERE workspace_id = $1"
            " AND type = 'contact.score_changed' AND object_id = ANY($2::uuid[]) GROUP BY object_id",
            ws,
            list(sent),
        )
        lat = [(r["at"].timestamp() - sent[r["object_id"]]) * 1000 for r in rows]
        q = statistics.quantiles(lat, n=100)
        out["freshness_ms_p50_p99"] = [round(q[49], 1), round(q[98], 1)]
        out["freshness_samples"] = f"{len(lat)}/{len(sent)}"
        print(f"answer to score: p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms ({len(lat)} samples)", flush=True)
    finally:
        if worker is not None:
            worker.terminate()
        api.terminate()
        await conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=4000)
    parser.add_argument("--rules", type=int, default=20)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    fresh = ["-qc", f"DROP DATABASE IF EXISTS {DB}", "-c", f"CREATE DATABASE {DB}"]
    subprocess.run(["psql", f"{PG}/postgres", *fresh], check=True)
    sh("crm-api", "migrate")
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    sys.exit(main())
