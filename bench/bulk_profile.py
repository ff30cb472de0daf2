"""Where an import's time goes, in-process: a fresh database, 1,000 companies, then N contacts from CSV (a
company by domain each, as bench/bulk.py sends them) run by the worker's own job loop in this process, under
cProfile; prints the process's CPU time, the wall time, the wall time of each statement the job ran (with
EXPLAIN=1, the plan of the twelfth chunk's write statement) and the top functions by cumulative time.

python bench/bulk_profile.py [--pg postgresql://postgres@127.0.0.1:5432] [--rows 20000] [--top 30]
(``--top 0``: no profiler, whose overhead more than doubles the CPU time)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
import uuid
from typing import Any

import asyncpg
import httpx

from crm_api.admin import keys
from crm_api.app import create_app
from crm_api.bulk import worker
from crm_api.config import Settings
from crm_api.db import create_pool
from crm_api.masterkey import new_key
from crm_api.migrate import upgrade

DB = os.environ.get("BULK_PROFILE_DB", "crm_bench_bulk_profile")


def _csv(rows: int) -> str:
    lines = ["email,first_name,last_name,company.domain,lifecycle_stage,tags"]
    lines += [
        f"b{i}@example.com,First{i},Last{i % 997},co{i % 1000}.example,lead,imported" for i in range(rows)
    ]
    return "\n".join(lines) + "\n"


PLANS: list[str] = []
EXPLAIN = os.environ.get("EXPLAIN") == "1"
WAITS: dict[str, list[float]] = {}
"""Each statement's wall times (its first words), from the patched connection methods below."""


def _timed() -> None:
    """Time every statement the job's connections run, wall clock, by the statement's first 90 chars."""
    for name in ("fetch", "fetchrow", "fetchval", "execute", "executemany"):
        original = getattr(asyncpg.Connection, name)

        def make(original: Any) -> Any:
            async def timed(self: Any, query: str, *args: Any, **kw: Any) -> Any:
                if (
                    EXPLAIN
                    and query.startswith("WITH ins AS")
                    and not PLANS
                    and len(WAITS.get(" ".join(query.split())[:90], [])) == 11
                ):
                    tx = self.transaction()  # a savepoint, rolled back: the plan of the real write
                    await tx.start()
                    plan = await self.fetch("EXPLAIN (ANALYZE, BUFFERS) " + query, *args)
                    await tx.rollback()
                    PLANS.append("\n".join(r[0] for r in plan))
                began = time.perf_counter()
                try:
                    return await original(self, query, *args, **kw)
                finally:
                    key = " ".join(query.split())[:90]
                    WAITS.setdefault(key, []).append(time.perf_counter() - began)

            return timed

        setattr(asyncpg.Connection, name, make(original))


async def fresh(pg: str) -> None:
    admin = await asyncpg.connect(f"{pg}/postgres")
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {DB}")
    await admin.close()


async def main(pg: str, rows: int, top: int) -> None:
    url = f"{pg}/{DB}"
    app = create_app(Settings(run_dispatcher=False, auth_failures_per_minute=10_000), url=url)
    pool = await create_pool(url, 5)
    async with app.router.lifespan_context(app):
        async with pool.acquire() as conn, conn.transaction():
            ws, _ = await keys.ensure_workspace(conn, f"bench-{uuid.uuid4().hex[:6]}")
            key, _ = await keys.create_key(conn, ws, "bench", ["*", "admin"])
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as api:
            items = [{"name": f"Co {i}", "domain": f"co{i}.example"} for i in range(1000)]
            for start in (0, 500):
                r = await api.post("/v1/companies/batch", json={"items": items[start : start + 500]})
                assert r.status_code == 200, r.text
            body = {"object_type": "contacts", "format": "csv", "upsert_key": "email", "file": _csv(rows)}
            r = await api.post("/v1/imports", json=body)
            assert r.status_code == 202, r.text
            job = r.json()["id"]
            _timed()
            profile = cProfile.Profile()
            cpu, wall = time.process_time(), time.perf_counter()
            if top:
                profile.enable()
            await worker.run_once(pool, Settings(bulk_lease_seconds=60), asyncio.Event())
            profile.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            done = (await api.get(f"/v1/imports/{job}")).json()
            assert done["status"] == "succeeded" and done["created"] == rows, done
            events = await pool.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", ws)
    print(f"load average {os.getloadavg()}")
    print(f"import of {rows:,} rows: wall {wall:.1f} s, this process's CPU {cpu:.1f} s, events {events:,}")
    print(f"per 1,000 rows: wall {wall / rows * 1000:.2f} s, CPU {cpu / rows * 1000:.2f} s")
    for plan in PLANS:
        print(plan)
    for query, waits in sorted(WAITS.items(), key=lambda kv: -sum(kv[1]))[:15]:
        print(f"{len(waits):>6} calls {sum(waits):7.2f} s  {query}")
        if query.startswith("WITH ins"):
            print("   each:", " ".join(f"{w:.2f}" for w in waits))
    await pool.close()
    if top:
        pstats.Stats(profile).sort_stats(os.environ.get("SORT", "cumulative")).print_stats(top)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(fresh(args.pg))
    os.environ.setdefault("CRM_SECRET_KEY", new_key())
    upgrade(f"{args.pg}/{DB}")
    asyncio.run(main(args.pg, args.rows, args.top))
