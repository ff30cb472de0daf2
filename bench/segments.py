"""Segment benchmark on the local PostgreSQL (database ``crm_bench_seg`` unless ``--db``, recreated).

    python bench/segments.py [--seconds 10] [--segments 200] [--samples 100] [--matching many|few|none]
                             [--db crm_bench_seg] [--port 8093]

1. contact-create throughput through ``crm-api serve`` (2 processes, 16 clients) with no segment, then with
   ``--segments`` dynamic contact segments and one ``crm-api worker`` keeping them current (the worker
   shares the machine with the API, as it would on a small host);
2. the build: seconds until every new segment is ``ready`` over the contacts written in 1;
3. freshness, with the worker idle: single creates that enter a segment, spaced out; the API's answer
   to the worker's ``segment_changes`` row (its clock, taken just before its commit), p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid

import asyncpg
import psutil
from cryptography.fernet import Fernet
from httpclient import Connection
from load import operations, run

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB = "crm_bench_seg"
URL = f"{PG}/{DB}"
ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("CRM_")},
    "CRM_RUN_DISPATCHER": "false",
    "CRM_SECRET_KEY": Fernet.generate_key().decode(),
    "CRM_RATE_LIMIT_KEY_PER_SECOND": "1000000",
    "CRM_RATE_LIMIT_KEY_BURST": "2000000",
    "CRM_RATE_LIMIT_WORKSPACE_PER_SECOND": "1000000",
    "CRM_RATE_LIMIT_WORKSPACE_BURST": "2000000",
}
STAGES = ["subscriber", "lead", "customer", "evangelist"]


def sh(*args: str) -> str:
    return subprocess.run(args, env=ENV, check=True, capture_output=True, text=True).stdout


def tree(proc: psutil.Process) -> list[psutil.Process]:
    """The process and its children (``crm-api serve``'s API processes)."""
    return [proc, *proc.children(recursive=True)]


def own_cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += sum(p.cpu_times()[:2])
    return total


async def backend_cpu(conn: asyncpg.Connection, *procs: psutil.Process) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving the processes' connections (found by the
    client port), by backend pid: the worker's statements cost there, not in its own process."""
    ports = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            ports += [c.laddr.port for c in proc.net_connections("tcp") if c.raddr and c.raddr.port == 5432]
    pids = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[])", ports)
    out = {}
    for r in pids:
        with contextlib.suppress(psutil.Error):
            out[r["pid"]] = sum(psutil.Process(r["pid"]).cpu_times()[:2])
    return out


def segment_filter(i: int, matching: str = "many") -> dict[str, object]:
    """Filters of the kinds marketing uses, varied so no two segments are the same statement's values.
    ``matching``: ``many``, a load contact enters ~55 of 200 segments (the kind 1 and 2 filters match it);
    ``few``, it enters 2 (the kind 2 filters of ``i`` 2 and 6 name its first name, the other kind 1 and 2
    ones values it does not have), a realistic mix; ``none``, it enters none (kinds 1 and 2 name values it
    does not have), so the figure is the cost of following writes rather than of writing entries (the
    freshness samples still enter the kind 0 ones)."""
    kind = i % 4
    if matching == "few" and kind == 2 and i in (2, 6):
        return {"field": "first_name", "op": "in", "value": ["Load", f"n{i}"]}
    if matching in ("none", "few") and kind in (1, 2):
        return {"field": "email", "op": "contains", "value": f"@x{i}."}
    if kind == 0:
        return {"field": "lifecycle_stage", "op": "eq", "value": STAGES[i % len(STAGES)]}
    if kind == 1:
        return {"and": [{"field": "created_at", "op": "gt", "value": f"-{i + 1}d"},
                        {"field": "email", "op": "contains", "value": f"-{i % 10}"}]}  # fmt: skip
    if kind == 2:
        return {"field": "first_name", "op": "in", "value": ["Load", f"n{i}"]}
    return {"or": [{"field": "tags", "op": "contains", "value": f"t{i}"},
                   {"field": "company.industry", "op": "eq", "value": f"i{i}"}]}  # fmt: skip


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    port = args.port
    key = sh("crm-api", "create-key", "--workspace", "bench", "--scopes", "*").strip().splitlines()[-1]
    conn = await asyncpg.connect(URL)
    ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = 'bench'")
    serve = ["crm-api", "serve", "--port", str(port), "--workers", "2"]
    api = subprocess.Popen(serve, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    worker: subprocess.Popen[bytes] | None = None
    try:
        client = Connection("127.0.0.1", port, key)
        for _ in range(600):  # a loaded machine starts two API processes slowly
            assert api.poll() is None, "crm-api serve exited"
            try:
                await client.request("GET", "/health")
                break
            except OSError:
                client = Connection("127.0.0.1", port, key)
                await asyncio.sleep(0.2)
        ops = operations([])
        # the writes' own CPU: the API processes and their PostgreSQL backends, per 1,000 writes
        serving = tree(psutil.Process(api.pid))
        api0, api_pg0 = own_cpu(serving), await backend_cpu(conn, *serving)
        before = await conn.fetchval("SELECT count(*) FROM contacts WHERE workspace_id = $1", ws)
        r = await run("127.0.0.1", port, key, ops["create"], 16, args.seconds)
        writes = await conn.fetchval("SELECT count(*) FROM contacts WHERE workspace_id = $1", ws) - before
        api_cpu = own_cpu(serving) - api0
        api_pg = sum(v - api_pg0.get(k, 0.0) for k, v in (await backend_cpu(conn, *serving)).items())
        out["create_rps_no_segments"] = round(r["rps"])
        out["api_cpu_s_per_1000_writes"] = round(api_cpu / writes * 1000, 3)
        out["api_pg_cpu_s_per_1000_writes"] = round(api_pg / writes * 1000, 3)
        print(
            f"create, no segment: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms; per 1,000 writes the API"
            f" processes {api_cpu / writes * 1000:.2f} s of CPU, their backends"
            f" {api_pg / writes * 1000:.2f} s",
            flush=True,
        )

        for i in range(args.segments):
            body = {
                "name": f"s{i}",
                "object_type": "contact",
                "kind": "dynamic",
                "filter": segment_filter(i, args.matching),
            }
            status, text = await client.request("POST", "/v1/segments", body)
            assert status == 201, text
        contacts = await conn.fetchval("SELECT count(*) FROM contacts WHERE workspace_id = $1", ws)
        began = time.perf_counter()
        worker = subprocess.Popen(["crm-api", "worker"], env=ENV)  # noqa: ASYNC220
        while await conn.fetchval(  # noqa: ASYNC110 - polling the database
            "SELECT count(*) FROM segments WHERE workspace_id = $1 AND status = 'building'", ws
        ):
            await asyncio.sleep(0.2)
        took = time.perf_counter() - began
        out["build_seconds"] = round(took, 1)
        out["build_contacts"] = contacts
        print(f"{args.segments} segments built over {contacts} contacts in {took:.1f} s", flush=True)

        proc = psutil.Process(worker.pid)
        await asyncio.sleep(1)  # the worker settles into its idle polling
        cpu0 = sum(proc.cpu_times()[:2])
        pg0 = await backend_cpu(conn, proc)
        before = await conn.fetchval("SELECT count(*) FROM contacts WHERE workspace_id = $1", ws)
        r = await run("127.0.0.1", port, key, ops["create"], 16, args.seconds)
        out[f"create_rps_{args.segments}_segments"] = round(r["rps"])
        window_cpu = sum(proc.cpu_times()[:2]) - cpu0
        pg1 = await backend_cpu(conn, proc)
        window_pg = sum(v - pg0.get(k, 0.0) for k, v in pg1.items())
        ratio = r["rps"] / out["create_rps_no_segments"]  # type: ignore[operator]
        out["with_segments_vs_without"] = round(ratio, 2)
        print(f"create, {args.segments} segments + worker: {r['rps']:.0f} req/s ({ratio:.2f}x)", flush=True)
        # the worker catches up before the freshness samples
        while await conn.fetchval(  # noqa: ASYNC110
            "SELECT max(sequence) FROM events WHERE workspace_id = $1", ws
        ) > await conn.fetchval("SELECT sequence FROM segment_cursors WHERE workspace_id = $1", ws):
            await asyncio.sleep(0.2)
        # the worker's CPU for the window's writes: during it, and catching up after it (the polls of the
        # catch-up loop's 0.2 s granularity included)
        writes = await conn.fetchval("SELECT count(*) FROM contacts WHERE workspace_id = $1", ws) - before
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        pg2 = await backend_cpu(conn, proc)
        pg = sum(v - pg0.get(k, 0.0) for k, v in pg2.items())
        out["window_writes"] = writes
        out["worker_cpu_s_in_window"] = round(window_cpu, 2)
        out["worker_cpu_s_per_1000_writes"] = round(cpu / writes * 1000, 3)
        out["worker_pg_cpu_s_in_window"] = round(window_pg, 2)
        out["worker_pg_cpu_s_per_1000_writes"] = round(pg / writes * 1000, 3)
        # the worker's whole cost against the writes' own (both per 1,000 writes): what following the
        # segments adds to each write's CPU, whatever the machine's load does to the req/s
        own = out["api_cpu_s_per_1000_writes"] + out["api_pg_cpu_s_per_1000_writes"]  # type: ignore[operator]
        out["worker_cpu_vs_write_cpu"] = round((cpu + pg) / writes * 1000 / own, 3)
        print(
            f"worker CPU: {cpu:.2f} s for {writes} writes ({window_cpu:.2f} s in the window); its PostgreSQL"
            f" backends: {pg:.2f} s ({window_pg:.2f} s in the window)",
            flush=True,
        )

        sent: dict[uuid.UUID, float] = {}
        for n in range(args.samples):
            body = {"first_name": f"fresh{n}", "lifecycle_stage": STAGES[0]}
            status, text = await client.request("POST", "/v1/contacts", body)
            sent[uuid.UUID(json.loads(text)["id"])] = time.time()
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)
        rows = await conn.fetch(
            "SELECT object_id, min(created_at) AS at FROM segment_changes"
            " WHERE workspace_id = $1 AND object_id = ANY($2::uuid[]) GROUP BY object_id",
            ws,
            list(sent),
        )
        lat = [(r["at"].timestamp() - sent[r["object_id"]]) * 1000 for r in rows]
        q = statistics.quantiles(lat, n=100)
        out["freshness_ms_p50_p99"] = [round(q[49], 1), round(q[98], 1)]
        out["freshness_samples"] = f"{len(lat)}/{len(sent)}"
        print(
            f"answer to membership: p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms ({len(lat)} samples)", flush=True
        )
    finally:
        if worker is not None:
            worker.terminate()
        api.terminate()
        await conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--segments", type=int, default=200)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--matching", choices=["many", "few", "none"], default="many")
    parser.add_argument("--db", default=DB, help="the database, dropped and made again")
    parser.add_argument("--port", type=int, default=8093, help="the API's port")
    args = parser.parse_args()
    global URL
    URL = f"{PG}/{args.db}"
    ENV["CRM_DATABASE_URL"] = URL.replace("postgresql://", "postgresql+asyncpg://", 1)
    fresh = ["-qc", f"DROP DATABASE IF EXISTS {args.db}", "-c", f"CREATE DATABASE {args.db}"]
    subprocess.run(["psql", f"{PG}/postgres", *fresh], check=True)
    sh("crm-api", "migrate")
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    sys.exit(main())
