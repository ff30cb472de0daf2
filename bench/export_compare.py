"""A CSV export the old way and the new way, side by side in one process on one seeded database.

python bench/export_compare.py [--pg postgresql://postgres@127.0.0.1:5432] [--rows 300000] [--rounds 2]

A fresh database, `--rows` contacts seeded with SQL (seed.py, custom fields included), then every field of
every contact to CSV, in alternating rounds: "cursor" is the export before COPY (a cursor fetching 2,000
rows at a time, each cell converted in Python, csv.writer), "copy" is `COPY (SELECT ...) TO STDOUT` with
the cells made by SQL. Each round runs in its own REPEATABLE READ transaction and counts the bytes it gets
(no parts are stored, so both measure the read and the conversion). Prints wall and this process's CPU per
round, and checks that the two files hold the same cells (JSON columns compared as JSON: PostgreSQL spaces
its JSON text).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from crm_api.bulk import exports
from crm_api.bulk.mapping import OBJECTS
from crm_api.config import Settings
from crm_api.db import create_pool
from crm_api.masterkey import new_key
from crm_api.migrate import upgrade

DB = "crm_bench_export_compare"


async def cursor_csv(conn: Any, spec: Any, ws: Any, fields: list[str], keep: bool) -> tuple[int, bytes]:
    formatter = exports.Formatter(spec, "csv", fields)
    params, where = await exports.conditions(conn, spec, ws, None, False)
    stmt = exports._statement(spec, where)
    size, out = 0, bytearray()
    cursor = await conn.cursor(stmt.text, *stmt.args(params.values))
    while batch := await cursor.fetch(2000):
        data = formatter.rows(batch)
        size += len(data)
        if keep:
            out += data
    return size, bytes(out)


async def copy_csv(conn: Any, spec: Any, ws: Any, fields: list[str], keep: bool) -> tuple[int, bytes]:
    params, where = await exports.conditions(conn, spec, ws, None, False)
    query, args = exports.csv_copy(spec, fields, exports._statement(spec, where), params.values)
    size, out = 0, bytearray()

    async def take(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if keep:
            out.extend(data)

    await conn.copy_from_query(query, *args, output=take, format="csv")
    return size, bytes(out)


def _same(a: bytes, b: bytes, fields: list[str]) -> int:
    """Rows whose cells differ (JSON cells compared as JSON)."""
    jsons = {i for i, f in enumerate(fields) if f in ("custom_fields", "external_ids")}
    bad = 0
    for x, y in zip(csv.reader(io.StringIO(a.decode())), csv.reader(io.StringIO(b.decode())), strict=True):
        for i, (u, v) in enumerate(zip(x, y, strict=True)):
            if (json.loads(u or "null") != json.loads(v or "null")) if i in jsons else u != v:
                bad += 1
                print("differs:", fields[i], repr(u), repr(v))
                break
    return bad


async def main(pg: str, rows: int, rounds: int) -> None:
    from seed import seed_direct

    url = f"{pg}/{DB}"
    pool = await create_pool(url, 2)
    async with pool.acquire() as conn:
        ws = await conn.fetchval(
            "INSERT INTO workspaces (id, name, created_at) "
            "VALUES (gen_random_uuid(), 'bench', now()) RETURNING id"
        )
    print(f"seeded {rows:,} contacts in {await seed_direct(url, 'bench', rows):.1f} s")
    spec = OBJECTS["contacts"]
    fields = exports.field_names(spec)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        _, a = await cursor_csv(conn, spec, ws, fields, True)
        _, b = await copy_csv(conn, spec, ws, fields, True)
        print(f"cells compared over {rows:,} rows: {_same(a, b, fields)} rows differ")
        del a, b
    for n in range(rounds):
        for name, run in (("cursor", cursor_csv), ("copy", copy_csv)):
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                cpu, wall = time.process_time(), time.perf_counter()
                size, _ = await run(conn, spec, ws, fields, False)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(
                f"round {n + 1} {name:>6}: {rows:,} rows, {size / 2**20:.0f} MiB in {wall:.1f} s wall, "
                f"{cpu:.1f} s CPU of this process, {rows / wall:,.0f} rows/s; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    await pool.close()


async def fresh(pg: str) -> None:
    admin = await asyncpg.connect(f"{pg}/postgres")
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {DB}")
    await admin.close()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(fresh(args.pg))
    os.environ.setdefault("CRM_SECRET_KEY", new_key())
    upgrade(f"{args.pg}/{DB}")
    Settings()  # the environment is complete
    asyncio.run(main(args.pg, args.rows, args.rounds))
