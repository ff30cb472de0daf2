"""``include=`` in two versions of the code side by side: the API process's CPU per request (which a busy
machine disturbs far less than latency) and the light client's p50, for the plain page of 50 deals and the
same page with ``include=contact,company``.

    python bench/include_cpu.py OLD_TREE NEW_TREE [--deals 1000] [--rounds 3] [--requests 300] [--port 8091]

One database (``crm_bench_include_cpu``, the trees must share the schema's head); ``--deals`` deals seeded
as bench/includes.py does (each with its own contact and company), then ``ANALYZE``. A server of one worker
runs from each tree's ``src/`` at once; each round asks one then the other (alternating which goes first)
for ``--requests`` requests of each kind, one at a time, after 20 warm-ups. Prints each round's figures
and the medians: CPU ms per request, the include/plain CPU ratio, and p50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import includes  # noqa: E402  (bench/ is not a package)
from cpu_compare import PG, _env, _run, _wait  # noqa: E402
from httpclient import Connection  # noqa: E402

DB = "crm_bench_include_cpu"
PATHS = {"plain": "/v1/deals?limit=50", "include": "/v1/deals?limit=50&include=contact,company"}


async def _measure(
    port: int, path: str, proc: psutil.Process, requests: int, key: str
) -> tuple[float, float]:
    """(CPU ms per request, p50 ms) of ``requests`` sequential GETs of ``path``."""
    conn = Connection("127.0.0.1", port, key)
    for _ in range(20):
        await conn.request("GET", path)
    took = []
    before = sum(proc.cpu_times()[:2])
    for _ in range(requests):
        began = time.perf_counter()
        status, _body = await conn.request("GET", path)
        took.append(time.perf_counter() - began)
        assert status == 200, status
    cpu = sum(proc.cpu_times()[:2]) - before
    await conn.close()
    return cpu / requests * 1000, statistics.median(took) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--deals", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--port", type=int, default=8091, help="the old server's; the new one's is the next")
    parser.add_argument("--db", default=DB, help="the database to (re)create and seed")
    args = parser.parse_args()
    db = args.db
    _run("psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {db}", "-c", f"CREATE DATABASE {db}")
    key = _run("crm-api", "create-key", "--workspace", "bench", "--scopes", "*", env=_env(args.new, db))
    key = key.strip().splitlines()[-1]
    trees = {"old": (args.old, args.port), "new": (args.new, args.port + 1)}
    for _tree, port in trees.values():
        with socket.socket() as probe:  # another server there (with SO_REUSEPORT) would share the requests
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(f"port {port} is taken: pass another --port")
    servers = {}
    for label, (tree, port) in trees.items():
        cmd = ["crm-api", "serve", "--port", str(port), "--workers", "1", "--no-dispatcher", "--no-migrate"]
        servers[label] = subprocess.Popen(
            cmd, env=_env(tree, db), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    try:
        for _tree, port in trees.values():
            _wait(port)
        asyncio.run(includes.setup("127.0.0.1", trees["new"][1], key, args.deals))
        _run("psql", f"{PG}/{db}", "-qc", "ANALYZE")
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for i in range(args.rounds):
            for label in ("old", "new") if i % 2 == 0 else ("new", "old"):
                proc = psutil.Process(servers[label].pid)
                for kind, path in PATHS.items():
                    r = asyncio.run(_measure(trees[label][1], path, proc, args.requests, key))
                    results.setdefault((label, kind), []).append(r)
                    print(
                        f"round {i + 1} {label} {kind:8} CPU {r[0]:.2f} ms/req  p50 {r[1]:.2f} ms", flush=True
                    )
        print(
            "| code | plain: CPU ms/req | include: CPU ms/req | CPU ratio "
            "| p50 ms plain | p50 ms include | p50 ratio |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label in trees:
            cpu = [statistics.median(r[0] for r in results[(label, k)]) for k in PATHS]
            p50 = [statistics.median(r[1] for r in results[(label, k)]) for k in PATHS]
            print(f"| {label} | {cpu[0]:.2f} | {cpu[1]:.2f} | {cpu[1] / cpu[0]:.2f} | {p50[0]:.2f} | "
                  f"{p50[1]:.2f} | {p50[1] / p50[0]:.2f} |")  # fmt: skip
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
