"""Two versions of the code side by side by the API process's CPU per request, which a busy machine
disturbs far less than requests per second.

    python bench/cpu_compare.py OLD_TREE NEW_TREE [--rounds 3] [--seconds 6] [--clients 8] [--suite sales]

One database (``crm_bench_cpu`` on the local PostgreSQL, 100,000 contacts seeded once); each round starts
``crm-api serve --workers 1`` from each tree's ``src/`` in turn (alternating which goes first), drives
each operation of bench/load.py for a few seconds, and reads the server process's CPU time (user + system)
before and after (``--suite sales``: the deal operations of bench/sales.py, on 2,000 deals it seeds through
the batch endpoint each time a server starts). Prints the median CPU microseconds per request for each
operation, old and new, and their ratio; requests per second are printed too, for what they are worth on a
shared machine. The PostgreSQL CPU per request is measured alike, from the client backends connected to
the tree's database (the API's pool), so a schema change (indexes, triggers) shows in its own column.
``BENCH_CPU_DB`` and ``BENCH_CPU_PORT`` override the database name and port; ``--functions`` has
PostgreSQL count the PL/pgSQL functions (triggers) each database ran, and prints their calls and time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import load  # noqa: E402  (bench/ is not a package)
import sales  # noqa: E402

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB = os.environ.get("BENCH_CPU_DB", "crm_bench_cpu")
PORT = int(os.environ.get("BENCH_CPU_PORT", "8079"))
OPS = ("create", "get", "list", "filtered_list", "update")
SALES_OPS = (
    "deal_create",
    "deal_stage_move",
    "deal_get",
    "deal_list_by_stage",
    "deal_stage_history",
    "deal_timeline",
)


def _run(*cmd: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


_SECRET = base64.urlsafe_b64encode(os.urandom(32)).decode()  # a master key (Fernet's form) for this run


def _env(tree: str, db: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": f"{tree}/src",
        "CRM_DATABASE_URL": f"postgresql+asyncpg://{PG.removeprefix('postgresql://')}/{db}",
        "CRM_RUN_DISPATCHER": "false",
        "CRM_SECRET_KEY": _SECRET,
        # quotas stay on (their cost is measured) but far above what the load sends, as bench/run.sh does
        "CRM_RATE_LIMIT_KEY_PER_SECOND": "1000000",
        "CRM_RATE_LIMIT_KEY_BURST": "2000000",
        "CRM_RATE_LIMIT_WORKSPACE_PER_SECOND": "1000000",
        "CRM_RATE_LIMIT_WORKSPACE_BURST": "2000000",
        "CRM_LOG_LEVEL": "warning",
    }


def prepare(tree: str, db: str) -> str:
    """A database of its own for each tree (each migrates to its own head), seeded alike."""
    _run("psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {db}", "-c", f"CREATE DATABASE {db}")
    _run("psql", f"{PG}/postgres", "-qc", f"ALTER DATABASE {db} SET track_functions = 'pl'")
    key = _run("crm-api", "create-key", "--workspace", "bench", "--scopes", "*", env=_env(tree, db))
    key = key.strip().splitlines()[-1]
    seed = str(HERE / "seed.py")
    _run(sys.executable, seed, "--direct", f"{PG}/{db}", "--workspace", "bench", "--count", "100000")
    _run("psql", f"{PG}/{db}", "-qc", "ANALYZE")
    return key


def _wait(port: int) -> None:
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def _backends(db: str) -> dict[int, float]:
    """CPU seconds (user + system) so far of each client backend connected to ``db`` (but this query's)."""
    pids = _run(
        "psql", f"{PG}/{db}", "-Atc",
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
    ).split()  # fmt: skip
    out: dict[int, float] = {}
    for pid in map(int, pids):
        with contextlib.suppress(psutil.Error):
            out[pid] = sum(psutil.Process(pid).cpu_times()[:2])
    return out


def measure(
    tree: str, db: str, key: str, seconds: float, clients: int, suite: str = "contacts"
) -> dict[str, tuple[float, float, float]]:
    """{op: (API CPU microseconds per request, requests/s, PostgreSQL CPU microseconds per request)} for one
    server started from ``tree``."""
    server = subprocess.Popen(
        ["crm-api", "serve", "--port", str(PORT), "--workers", "1", "--no-dispatcher"],
        env=_env(tree, db),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(PORT)
        proc = psutil.Process(server.pid)
        if suite == "sales":
            deals, stages = asyncio.run(sales.setup("127.0.0.1", PORT, key, 2000))
            ops = sales.operations(deals, stages)
        else:
            ops = load.operations(asyncio.run(load.sample_ids("127.0.0.1", PORT, key)))
        out: dict[str, tuple[float, float, float]] = {}
        for name in SALES_OPS if suite == "sales" else OPS:
            asyncio.run(load.run("127.0.0.1", PORT, key, ops[name], clients, 1.0))  # warm
            pg_before = _backends(db)
            before = sum(proc.cpu_times()[:2])
            began = time.perf_counter()
            result = asyncio.run(load.run("127.0.0.1", PORT, key, ops[name], clients, seconds))
            took = time.perf_counter() - began
            cpu = sum(proc.cpu_times()[:2]) - before
            pg_after = _backends(db)
            pg = sum(v - pg_before.get(pid, 0.0) for pid, v in pg_after.items())
            requests = result["rps"] * took
            out[name] = (cpu / requests * 1e6, result["rps"], pg / requests * 1e6)
        return out
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--suite", choices=("contacts", "sales"), default="contacts")
    parser.add_argument("--functions", action="store_true", help="print the triggers' calls and time")
    args = parser.parse_args()
    ops = SALES_OPS if args.suite == "sales" else OPS
    trees = {"old": (args.old, f"{DB}_old"), "new": (args.new, f"{DB}_new")}
    keys = {label: prepare(tree, db) for label, (tree, db) in trees.items()}
    for _, db in trees.values():  # the seeding's calls are not the requests'
        _run("psql", f"{PG}/{db}", "-qAtc", "SELECT pg_stat_reset()")
    cpu: dict[tuple[str, str], list[float]] = defaultdict(list)
    rps: dict[tuple[str, str], list[float]] = defaultdict(list)
    pg: dict[tuple[str, str], list[float]] = defaultdict(list)
    for i in range(args.rounds):
        order = ["old", "new"] if i % 2 == 0 else ["new", "old"]
        for label in order:
            tree, db = trees[label]
            measured = measure(tree, db, keys[label], args.seconds, args.clients, args.suite)
            for op, (us, r, pg_us) in measured.items():
                cpu[(label, op)].append(us)
                rps[(label, op)].append(r)
                pg[(label, op)].append(pg_us)
            print(f"round {i + 1}: {label} done", file=sys.stderr, flush=True)
    print(
        "| operation | old CPU us/req | new CPU us/req | new/old | old PG us/req | new PG us/req | new/old"
        " | old req/s | new req/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for op in ops:
        old, new = statistics.median(cpu[("old", op)]), statistics.median(cpu[("new", op)])
        pg_old, pg_new = statistics.median(pg[("old", op)]), statistics.median(pg[("new", op)])
        print(
            f"| {op} | {old:,.0f} | {new:,.0f} | {new / old:.2f} | {pg_old:,.0f} | {pg_new:,.0f} | "
            f"{pg_new / pg_old:.2f} | "
            f"{statistics.median(rps[('old', op)]):,.0f} | {statistics.median(rps[('new', op)]):,.0f} |"
        )
    if args.functions:
        for label, (_, db) in trees.items():
            print(f"\n{label}: PL/pgSQL functions run for the requests (calls, total ms, self ms per call)")
            query = (
                "SELECT funcname, calls, round(total_time::numeric, 1),"
                " round((self_time / calls)::numeric, 4) FROM pg_stat_user_functions WHERE calls > 0"
                " ORDER BY total_time DESC"
            )
            print(_run("psql", f"{PG}/{db}", "-Atc", query))


if __name__ == "__main__":
    main()
