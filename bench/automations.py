"""Automations end to end: a fresh database, `crm-api serve` and `crm-api worker` processes.

python bench/automations.py [--pg postgresql://postgres@127.0.0.1:5432] [--latency 50] [--runs 2000]
                            [--workers 2] [--db crm_bench_automations] [--port 8767]

Latency: `--latency` contacts created one at a time, 0.3 s apart, with idle workers; for each, from the
contact's commit (its `contact.created` event) to the automation's write on it (its `contact.updated`
event by `automation:<id>`), both stamped by the writing process's clock. Throughput: `--runs` contacts
created in batches of 500 while the workers are stopped, then the workers started and timed until every run
is written (runs/s from the first run to the last). `--db` and `--port` let two runs share a server. The
code run is the one on `PYTHONPATH` (old or new). One workspace: its runs go one batch at a time, whatever
the number of workers (the cursor row is the workspace's lock); more workers serve more workspaces.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

DB = "crm_bench_automations"
PORT = 8767


async def _fresh_database(pg: str, db: str) -> None:
    admin = await asyncpg.connect(f"{pg}/postgres")
    await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {db}")
    await admin.close()


async def _ready(client: httpx.AsyncClient) -> None:
    began = time.monotonic()
    while True:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            assert time.monotonic() - began < 180, "crm-api serve did not start (see its log)"
        await asyncio.sleep(0.2)


async def _runs(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM automation_runs"))


async def _until_runs(db: asyncpg.Connection, count: int) -> None:
    while True:
        if await _runs(db) >= count:
            return
        await asyncio.sleep(0.1)


async def bench_latency(client: httpx.AsyncClient, db: asyncpg.Connection, count: int) -> None:
    ids = []
    for i in range(count):
        r = await client.post("/v1/contacts", json={"email": f"lat{i}@example.com"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        await asyncio.sleep(0.3)
    await _until_runs(db, count)
    rows = await db.fetch(
        """SELECT u.created_at - c.created_at AS lag FROM events c
           JOIN events u ON u.object_id = c.object_id AND u.type = 'contact.updated'
            AND u.actor LIKE 'automation:%'
           WHERE c.type = 'contact.created' AND c.object_id = ANY($1::uuid[])""",
        ids,
    )
    lags = sorted(r["lag"].total_seconds() * 1000 for r in rows)
    p50, p95 = statistics.median(lags), lags[int(len(lags) * 0.95) - 1]
    print(f"latency: {len(lags)} runs, commit to the action's write p50 {p50:.0f} ms, p95 {p95:.0f} ms")


async def bench_throughput(client: httpx.AsyncClient, db: asyncpg.Connection, count: int, start: Any) -> None:
    before = await _runs(db)
    for at in range(0, count, 500):
        items = [{"email": f"thr{i}@example.com"} for i in range(at, min(at + 500, count))]
        r = await client.post("/v1/contacts/batch", json={"items": items})
        assert r.status_code == 200, r.text
    workers = start()
    try:
        await _until_runs(db, before + count)
    finally:
        for w in workers:
            w.terminate()
            w.wait()
    span = await db.fetchval(
        "SELECT extract(epoch FROM max(created_at) - min(created_at)) FROM automation_runs "
        "WHERE object_id IN (SELECT id FROM contacts WHERE email LIKE 'thr%')"
    )
    took = float(span)
    print(f"throughput: {count:,} runs (tag + note each) in {took:.1f} s, {count / took:,.0f} runs/s")


async def _drive(key: str, url: str, args: argparse.Namespace, start: Any) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    db = await asyncpg.connect(url)
    base = f"http://127.0.0.1:{args.port}"
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        await _ready(client)
        r = await client.post(
            "/v1/automations",
            json={
                "name": "welcome",
                "trigger": {"type": "event", "event_type": "contact.created"},
                "actions": [
                    {"type": "add_tags", "tags": ["welcomed"]},
                    {"type": "create_note", "body": "Welcome"},
                ],
            },
        )
        assert r.status_code == 201, r.text
        if args.latency:
            workers = start()
            try:
                await asyncio.sleep(2)  # started and idle
                await bench_latency(client, db, args.latency)
            finally:
                for w in workers:
                    w.terminate()
                    w.wait()
        if args.runs:
            await bench_throughput(client, db, args.runs, start)
    await db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--latency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--db", default=DB)
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args()
    asyncio.run(_fresh_database(args.pg, args.db))
    url = f"{args.pg}/{args.db}"
    crm = [sys.executable, "-m", "crm_api"]
    secret = subprocess.run([*crm, "secrets", "new-key"], capture_output=True, text=True, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    logs = Path(tempfile.gettempdir())
    env.update(
        CRM_DATABASE_URL=url,
        CRM_SECRET_KEY=secret.stdout.strip(),
        CRM_SLA_CHECK_SECONDS="0",
        CRM_DATA_DIR=str(logs / f"crm-bench-automations-{args.port}"),
    )
    made = subprocess.run(
        [*crm, "create-key", "--workspace", "bench", "--scopes", "*"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = made.stdout.strip().splitlines()[-1]
    serve = subprocess.Popen(
        [*crm, "serve", "--port", str(args.port), "--no-dispatcher"],
        env=env,
        stderr=(logs / f"automations-serve-{args.port}.log").open("wb"),
    )

    def start() -> list[subprocess.Popen[bytes]]:
        log = (logs / f"automations-worker-{args.port}.log").open("ab")
        return [
            subprocess.Popen([*crm, "worker", "--no-migrate"], env=env, stderr=log)
            for _ in range(args.workers)
        ]

    try:
        asyncio.run(_drive(key, url, args, start))
    finally:
        serve.terminate()
        serve.wait()


if __name__ == "__main__":
    main()
