"""``include=`` in two versions of the code, request by request: on a busy machine a round of one kind then a
round of the other sees different loads, so here every request of the four kinds (old plain, old include,
new plain, new include) takes its turn, one at a time, and each kind is served by a server of its own (one
worker each), so each kind's CPU per request is its server's CPU over its requests.

    python bench/include_interleaved.py OLD_TREE NEW_TREE [--deals 1000] [--requests 2000] [--port 8091]
        [--db crm_bench_include_interleaved]

One database (the trees must share the schema's head), ``--deals`` deals seeded as bench/includes.py does
(each with its own contact and company), then ``ANALYZE``. Prints, for each kind, p25, p50 and p90 ms as
the light client sees them and the server's CPU ms per request; then each code's include/plain ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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

PATHS = {"plain": "/v1/deals?limit=50", "include": "/v1/deals?limit=50&include=contact,company"}


async def _measure(kinds: list[tuple[str, str, int, str]], key: str, requests: int) -> dict[str, list[float]]:
    conns = {label: Connection("127.0.0.1", port, key) for label, _k, port, _p in kinds}
    for _ in range(20):
        for label, _kind, _port, path in kinds:
            await conns[label].request("GET", path)
    took: dict[str, list[float]] = {label: [] for label, *_ in kinds}
    for i in range(requests):
        turn = kinds[i % len(kinds) :] + kinds[: i % len(kinds)]  # who goes first rotates
        for label, _kind, _port, path in turn:
            began = time.perf_counter()
            status, _body = await conns[label].request("GET", path)
            took[label].append((time.perf_counter() - began) * 1000)
            assert status == 200, (label, status)
    for conn in conns.values():
        await conn.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--deals", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000, help="of each kind")
    parser.add_argument("--port", type=int, default=8091, help="the first of four")
    parser.add_argument("--db", default="crm_bench_include_interleaved")
    args = parser.parse_args()
    db = args.db
    _run("psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {db}", "-c", f"CREATE DATABASE {db}")
    key = _run("crm-api", "create-key", "--workspace", "bench", "--scopes", "*", env=_env(args.new, db))
    key = key.strip().splitlines()[-1]
    kinds = []
    for n, (code, tree) in enumerate((("old", args.old), ("new", args.new))):
        for m, (kind, path) in enumerate(PATHS.items()):
            kinds.append((f"{code} {kind}", tree, args.port + 2 * n + m, path))
    for *_rest, port, _path in kinds:
        with socket.socket() as probe:  # another server there (with SO_REUSEPORT) would share the requests
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(f"port {port} is taken: pass another --port")
    servers = {}
    for label, tree, port, _path in kinds:
        cmd = ["crm-api", "serve", "--port", str(port), "--workers", "1", "--no-dispatcher", "--no-migrate"]
        servers[label] = subprocess.Popen(
            cmd, env=_env(tree, db), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    try:
        for *_rest, port, _path in kinds:
            _wait(port)
        asyncio.run(includes.setup("127.0.0.1", kinds[0][2], key, args.deals))
        _run("psql", f"{PG}/{db}", "-qc", "ANALYZE")
        print(f"load average before: {os.getloadavg()}", flush=True)
        procs = {label: psutil.Process(s.pid) for label, s in servers.items()}
        before = {label: sum(p.cpu_times()[:2]) for label, p in procs.items()}
        plan = [
            (label, kind, port, path) for label, _tree, port, path in kinds for kind in [label.split()[1]]
        ]
        took = asyncio.run(_measure(plan, key, args.requests))
        cpu = {
            label: (sum(p.cpu_times()[:2]) - before[label]) * 1000 / args.requests
            for label, p in procs.items()
        }
        print(f"load average after: {os.getloadavg()}")
        print("| kind | p25 ms | p50 ms | p90 ms | server CPU ms/req |")
        print("|---|---:|---:|---:|---:|")
        quart: dict[str, list[float]] = {}
        for label, values in took.items():
            q = statistics.quantiles(values, n=20)
            quart[label] = [q[4], statistics.median(values), q[17]]
            print(
                f"| {label} | {q[4]:.2f} | {statistics.median(values):.2f} | {q[17]:.2f} | {cpu[label]:.2f} |"
            )
        for code in ("old", "new"):
            p, i = quart[f"{code} plain"], quart[f"{code} include"]
            print(f"{code}: include/plain p25 {i[0] / p[0]:.2f}, p50 {i[1] / p[1]:.2f}, "
                  f"CPU {cpu[f'{code} include'] / cpu[f'{code} plain']:.2f}")  # fmt: skip
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
