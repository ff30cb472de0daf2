"""A large dynamic segment's build, on the local PostgreSQL (database ``crm_bench_segbuild``, recreated).

    python bench/segment_build.py [--contacts 50000]

Seeds ``--contacts`` live contacts straight in SQL (the build reads rows; how they were written does not
matter to it), creates one dynamic segment through ``crm-api serve`` that all of them match, and times the
workers' build job (``segments.worker.build_once``, run in this process, one chunk of
``CRM_SEGMENT_BUILD_CHUNK`` contacts per call until none is left): every member row, history row and
``segment.member_added`` event with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time

import asyncpg
from httpclient import Connection
from segments import ENV, PG, sh

DB = "crm_bench_segbuild"
URL = f"{PG}/{DB}"
ENV["CRM_DATABASE_URL"] = URL.replace("postgresql://", "postgresql+asyncpg://", 1)


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    import crm_api.registry  # noqa: F401 - the resource specs register on import
    from crm_api.config import get_settings
    from crm_api.db import Timeouts, create_pool
    from crm_api.segments import worker

    port = 8095
    key = sh("crm-api", "create-key", "--workspace", "bench", "--scopes", "*").strip().splitlines()[-1]
    conn = await asyncpg.connect(URL)
    ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = 'bench'")
    began = time.perf_counter()
    await conn.execute(
        "INSERT INTO contacts (workspace_id, id, created_at, updated_at, first_name, lifecycle_stage)"
        " SELECT $1, gen_random_uuid(), now(), now(), 'n' || i, 'lead' FROM generate_series(1, $2) i",
        ws,
        args.contacts,
    )
    await conn.execute("ANALYZE contacts")
    print(f"seeded {args.contacts} contacts in {time.perf_counter() - began:.1f} s", flush=True)
    serve = ["crm-api", "serve", "--port", str(port), "--workers", "1"]
    api = subprocess.Popen(serve, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    out: dict[str, object] = {"contacts": args.contacts}
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
        flt = {"field": "lifecycle_stage", "op": "eq", "value": "lead"}
        body = {"name": "all", "object_type": "contact", "kind": "dynamic", "filter": flt}
        status, text = await client.request("POST", "/v1/segments", body)
        assert status == 201, text
        pool = await create_pool(ENV["CRM_DATABASE_URL"], 2, Timeouts.of(get_settings()))
        settings = get_settings()
        began = time.perf_counter()
        # one chunk per call, as a worker's loop runs them (old code: the whole build in one call)
        built = 0
        while chunks := await worker.build_once(pool, settings.segment_build_chunk):
            built += chunks
        took = time.perf_counter() - began
        members = await conn.fetchval("SELECT member_count FROM segments WHERE workspace_id = $1", ws)
        out.update(build_seconds=round(took, 1), members=members, built=built)
        print(f"built a {members}-member segment in {took:.1f} s", flush=True)
        await pool.close()
    finally:
        api.terminate()
        await conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=50_000)
    args = parser.parse_args()
    fresh = ["-qc", f"DROP DATABASE IF EXISTS {DB}", "-c", f"CREATE DATABASE {DB}"]
    subprocess.run(["psql", f"{PG}/postgres", *fresh], check=True)
    sh("crm-api", "migrate")
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    sys.exit(main())
