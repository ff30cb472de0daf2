"""Webhook delivery benchmark on the local PostgreSQL (database ``crm_bench_wh``, recreated).

    python bench/webhooks.py [--backlog 100000] [--workers 2]
    python bench/webhooks.py --mode ordering [--chain 1000] [--backlog 20000] [--objects 5000]

Mode ``all``:

1. throughput: a backlog of deliveries (inserted with SQL) drained by ``crm-api worker`` processes into a
   local receiver; deliveries/s and the workers' memory (RSS) while draining;
2. latency: with one idle worker, single creates spaced out; commit (the API's answer) to the receiver's
   first byte, p50 and p99;
3. enqueue cost: create req/s through the API (no dispatcher) with 0 and with 4 subscribed endpoints.

Mode ``ordering`` (``per_object`` endpoints, each next event of an object waits for the one before):

1. one object's ``--chain`` events to a ``per_object`` endpoint, one worker: seconds from the backlog's
   commit to the last delivery, and whether the receiver saw them in order;
2. ``--backlog`` deliveries over ``--objects`` objects, drained by ``--workers`` workers, once with
   ``ordering: none`` and once with ``per_object``: deliveries/s of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
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
DB = "crm_bench_wh"
URL = f"{PG}/{DB}"
ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("CRM_")},
    "CRM_DATABASE_URL": URL.replace("postgresql://", "postgresql+asyncpg://", 1),
    "CRM_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
    "CRM_RUN_DISPATCHER": "false",
    # the API seals endpoints' secrets, the workers open them: one key for all, fresh with the database
    "CRM_SECRET_KEY": Fernet.generate_key().decode(),
    # one key writes as fast as it can: quotas far above that (bench/run.sh does the same)
    "CRM_RATE_LIMIT_KEY_PER_SECOND": "1000000",
    "CRM_RATE_LIMIT_KEY_BURST": "2000000",
    "CRM_RATE_LIMIT_WORKSPACE_PER_SECOND": "1000000",
    "CRM_RATE_LIMIT_WORKSPACE_BURST": "2000000",
}


def receiver_main(port: int, log_path: str) -> None:
    """A bare asyncio HTTP/1.1 receiver: answers 200 and notes when each webhook-id first arrived."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                now = time.time()
                length, wid = 0, b""
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                    elif name.lower() == b"webhook-id":
                        wid = value.strip()
                await reader.readexactly(length)
                log.write(f"{wid.decode()} {now}\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    log = open(log_path, "w", buffering=1)  # noqa: SIM115 - lives as long as the process
    asyncio.run(main())


def sh(*args: str) -> str:
    return subprocess.run(args, env=ENV, check=True, capture_output=True, text=True).stdout


async def insert_backlog(ws: uuid.UUID, endpoint: uuid.UUID, n: int, objects: int = 0) -> None:
    """``n`` events and their deliveries to ``endpoint``: each of its own object, or spread over
    ``objects`` objects (event i belongs to object i mod objects, so each object's events interleave)."""
    conn = await asyncpg.connect(URL)
    try:
        await conn.execute(
            """
            WITH o AS (SELECT k, gen_random_uuid() AS id FROM generate_series(0, greatest($4, 1) - 1) AS k),
            ev AS (
                INSERT INTO events (workspace_id, id, type, object_type, object_id, actor, data, created_at)
                SELECT $1, gen_random_uuid(), 'contact.updated', 'contact',
                       CASE WHEN $4 > 0 THEN o.id ELSE gen_random_uuid() END,
                       'system:bench',
                       jsonb_build_object('object', jsonb_build_object('n', i), 'previous', '{}'::jsonb),
                       now()
                FROM generate_series(1, $3) AS i JOIN o ON o.k = i % greatest($4, 1)
                ORDER BY i
                RETURNING id, sequence, type, object_id
            )
            INSERT INTO webhook_deliveries
                (workspace_id, id, endpoint_id, event_id, event_sequence, event_type, object_id)
            SELECT $1, gen_random_uuid(), $2, id, sequence, type, object_id FROM ev
            """,
            ws,
            endpoint,
            n,
            objects,
        )
        await conn.execute("ANALYZE webhook_deliveries")  # what autovacuum does soon after such an insert
    finally:
        await conn.close()


async def pending(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"))


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    rport, aport = 8091, 8092
    log_path = "/tmp/crm-bench-receiver.log"
    receiver = multiprocessing.Process(target=receiver_main, args=(rport, log_path), daemon=True)
    receiver.start()
    key = sh("crm-api", "create-key", "--workspace", "bench", "--scopes", "*").strip().splitlines()[-1]
    conn = await asyncpg.connect(URL)
    ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = 'bench'")
    serve = ["crm-api", "serve", "--port", str(aport), "--workers", "2"]
    api = subprocess.Popen(serve, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    workers: list[subprocess.Popen[bytes]] = []
    try:
        client = Connection("127.0.0.1", aport, key)
        for _ in range(100):
            try:
                await client.request("GET", "/health")
                break
            except OSError:
                client = Connection("127.0.0.1", aport, key)
                await asyncio.sleep(0.2)

        # 3. enqueue cost first, with nothing being delivered
        ops = operations([])
        for n_endpoints in (0, 4):
            for i in range(n_endpoints if n_endpoints else 0):
                hook = {"url": f"http://127.0.0.1:{rport}/e{i}", "event_types": ["contact.*"]}
                await client.request("POST", "/v1/webhooks", hook)
            r = await run("127.0.0.1", aport, key, ops["create"], 16, args.seconds)
            out[f"create_rps_{n_endpoints}_endpoints"] = round(r["rps"])
            print(
                f"create with {n_endpoints} endpoints: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms",
                flush=True,
            )
        # those endpoints' deliveries are not part of the drain below
        await conn.execute("DELETE FROM webhook_endpoints WHERE workspace_id = $1", ws)

        # 1. throughput: a backlog drained by N worker processes
        _, body = await client.request(
            "POST", "/v1/webhooks", {"url": f"http://127.0.0.1:{rport}/drain", "event_types": ["*"]}
        )
        endpoint = uuid.UUID(json.loads(body)["id"])
        began = time.perf_counter()
        await insert_backlog(ws, endpoint, args.backlog)
        print(
            f"backlog of {args.backlog} deliveries inserted in {time.perf_counter() - began:.1f} s",
            flush=True,
        )
        began = time.perf_counter()
        workers = [subprocess.Popen(["crm-api", "worker"], env=ENV) for _ in range(args.workers)]  # noqa: ASYNC220
        rss: list[float] = []
        while (left := await pending(conn)) > 0:
            rss.append(sum(psutil.Process(w.pid).memory_info().rss for w in workers) / 2**20)
            print(f"  {left:>7} pending, workers' RSS {rss[-1]:.0f} MiB", flush=True)
            await asyncio.sleep(2)
        took = time.perf_counter() - began
        out["drain_seconds"] = round(took, 1)
        out["deliveries_per_second"] = round(args.backlog / took)
        out["worker_rss_mib_first_last_max"] = [round(rss[0]), round(rss[-1]), round(max(rss))] if rss else []
        print(f"drained {args.backlog} in {took:.1f} s: {args.backlog / took:.0f} deliveries/s", flush=True)
        for w in workers[1:]:
            w.terminate()
            w.wait()
        workers = workers[:1]

        # 2. latency when idle: one worker, one create at a time
        await asyncio.sleep(1)
        sent: dict[str, float] = {}
        for _ in range(args.latency_samples):
            _, body = await client.request("POST", "/v1/contacts", {"first_name": "lat"})
            answered = time.time()
            object_id = json.loads(body)["id"]
            eid = await conn.fetchval("SELECT id FROM events WHERE workspace_id = $1 AND object_id = $2", ws,
                                      uuid.UUID(object_id))  # fmt: skip
            sent[str(eid)] = answered
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        arrived: dict[str, float] = {}
        with open(log_path) as f:  # noqa: ASYNC230 - after the measurement
            for line in f:
                wid, _, at = line.partition(" ")
                arrived.setdefault(wid, float(at))
        lat = [(arrived[e] - t) * 1000 for e, t in sent.items() if e in arrived]
        q = statistics.quantiles(lat, n=100)
        out["latency_ms_p50_p99"] = [round(q[49], 1), round(q[98], 1)]
        out["latency_samples_delivered"] = f"{len(lat)}/{len(sent)}"
        print(
            f"commit to first attempt: p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms ({len(lat)} samples)",
            flush=True,
        )
    finally:
        for w in workers:
            w.terminate()
        api.terminate()
        receiver.terminate()
        await conn.close()
    return out


async def drain(conn: asyncpg.Connection, ws: uuid.UUID, endpoint: uuid.UUID, n: int, objects: int) -> float:
    """Seconds from the commit of ``n`` deliveries (running workers are woken by it) until none is pending."""
    began = time.perf_counter()
    await insert_backlog(ws, endpoint, n, objects)
    committed = time.perf_counter()
    print(f"  {n} deliveries over {objects or n} objects inserted in {committed - began:.1f} s", flush=True)
    while await pending(conn) > 0:  # noqa: ASYNC110 - polling the database, not an event of ours
        await asyncio.sleep(0.05)
    return time.perf_counter() - committed


def read_log(path: str) -> list[str]:
    with open(path) as f:
        return [line.partition(" ")[0] for line in f]


async def ordering_async(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    rport, aport = 8091, 8092
    log_path = "/tmp/crm-bench-receiver.log"
    receiver = multiprocessing.Process(target=receiver_main, args=(rport, log_path), daemon=True)
    receiver.start()
    key = sh("crm-api", "create-key", "--workspace", "bench", "--scopes", "*").strip().splitlines()[-1]
    conn = await asyncpg.connect(URL)
    ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = 'bench'")
    serve = ["crm-api", "serve", "--port", str(aport), "--workers", "1"]
    api = subprocess.Popen(serve, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    workers: list[subprocess.Popen[bytes]] = []

    async def endpoint(ordering: str, path: str) -> uuid.UUID:
        hook = {"url": f"http://127.0.0.1:{rport}{path}", "event_types": ["*"], "ordering": ordering}
        _, body = await client.request("POST", "/v1/webhooks", hook)
        return uuid.UUID(json.loads(body)["id"])

    def start_workers(n: int) -> None:
        for _ in range(n):
            workers.append(subprocess.Popen(["crm-api", "worker"], env=ENV))

    def stop_workers() -> None:
        for w in workers:
            w.terminate()
            w.wait()
        workers.clear()

    try:
        client = Connection("127.0.0.1", aport, key)
        for _ in range(100):
            try:
                await client.request("GET", "/health")
                break
            except OSError:
                client = Connection("127.0.0.1", aport, key)
                await asyncio.sleep(0.2)

        # 1. one object's chain of events, one worker
        chain = await endpoint("per_object", "/chain")
        start_workers(1)
        await asyncio.sleep(3)  # the worker is up and listening
        took = await drain(conn, ws, chain, args.chain, 1)
        stop_workers()
        rows = await conn.fetch(
            "SELECT e.id::text AS id FROM webhook_deliveries d JOIN events e"
            " ON e.workspace_id = d.workspace_id AND e.id = d.event_id"
            " WHERE d.endpoint_id = $1 ORDER BY e.sequence",
            chain,
        )
        sent = [r["id"] for r in rows]
        arrived = read_log(log_path)
        out["one_object_events"] = args.chain
        out["one_object_seconds"] = round(took, 2)
        out["one_object_in_order"] = arrived == sent
        print(
            f"one object, {args.chain} ordered events: {took:.2f} s, in order: {arrived == sent}", flush=True
        )

        # 2. many objects: none against per_object, the same backlog shape
        for ordering in ("none", "per_object"):
            target = await endpoint(ordering, f"/{ordering}")
            start_workers(args.workers)
            await asyncio.sleep(3)
            took = await drain(conn, ws, target, args.backlog, args.objects)
            stop_workers()
            await conn.execute("DELETE FROM webhook_endpoints WHERE id = $1", target)
            out[f"many_objects_{ordering}_per_second"] = round(args.backlog / took)
            print(f"{ordering}: {args.backlog} over {args.objects} objects in {took:.1f} s:"
                  f" {args.backlog / took:.0f} deliveries/s", flush=True)  # fmt: skip
        none, ordered = out["many_objects_none_per_second"], out["many_objects_per_object_per_second"]
        out["per_object_vs_none"] = round(float(ordered) / float(none), 2)  # type: ignore[arg-type]
    finally:
        stop_workers()
        api.terminate()
        receiver.terminate()
        await conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["all", "ordering"], default="all")
    parser.add_argument("--chain", type=int, default=1000, help="ordering: one object's events")
    parser.add_argument("--objects", type=int, default=5000, help="ordering: objects the backlog spans")
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--latency-samples", type=int, default=100)
    args = parser.parse_args()
    fresh = ["-qc", f"DROP DATABASE IF EXISTS {DB}", "-c", f"CREATE DATABASE {DB}"]
    subprocess.run(["psql", f"{PG}/postgres", *fresh], check=True)
    sh("crm-api", "migrate")
    run_mode = ordering_async if args.mode == "ordering" else main_async
    print(json.dumps(asyncio.run(run_mode(args)), indent=2))


if __name__ == "__main__":
    sys.exit(main())
