"""A report statement of an older revision and of this tree on one database (migrated to this tree's head):
both answers compared in one repeatable-read transaction (the same now()), for several parameters, then each
timed in turns with the reports' settings (work_mem 64 MB, jit off).

    python bench/reports_before_after.py --db postgresql://postgres@127.0.0.1:5432/crm_bench_reports \\
        [--before main] [--runs 7] [--only pipeline_as_of]

The old statement must read only columns the new schema still has (it does for these).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from cycle_before_after import _before

from crm_api.reports import customers as customers_now
from crm_api.reports import params
from crm_api.reports import sales as sales_now

_ROOMY = ("SET LOCAL work_mem = '64MB'", "SET LOCAL jit = off")


def _key(row: asyncpg.Record) -> str:
    return repr(tuple(str(v) for v in tuple(row)[:2]))


def _same(before: list[asyncpg.Record], after: list[asyncpg.Record]) -> bool:
    """Rows equal as values (a decimal's trailing zeros aside), in any order."""
    return [tuple(r) for r in sorted(before, key=_key)] == [tuple(r) for r in sorted(after, key=_key)]


def _cases(ws: Any, pipeline: Any) -> dict[str, list[tuple[str, Callable[[Any], Any], dict[str, Any]]]]:
    now = dt.datetime.now(dt.UTC)
    moments = [dt.datetime(2026, m, d, tzinfo=dt.UTC) for m, d in ((6, 30), (1, 1), (11, 15))]
    then = [
        (
            f"as_of {t.date()}",
            lambda m: m._pipeline_then(False, False),
            {"ws": ws, "pipeline_id": pipeline, "as_of": t},
        )
        for t in moments
    ]
    months = params.months_back(now.date(), 12)
    buyers = {
        "ws": ws,
        "as_of": now,
        "currency": "USD",
        "churn_before": now - dt.timedelta(days=180),
        "cohorts_from": dt.datetime.combine(months[0], dt.time(), dt.UTC),
        "tz": "UTC",
    }
    return {
        "pipeline_as_of": then,
        "customers": [("now, USD", lambda m: m._report(False), buyers)],
    }


async def _run(conn: asyncpg.Connection, stmt: Any, values: dict[str, Any]) -> list[asyncpg.Record]:
    async with conn.transaction(readonly=True):
        for setting in _ROOMY:
            await conn.execute(setting)
        rows: list[asyncpg.Record] = await conn.fetch(stmt.text, *stmt.args(values))
        return rows


async def main(url: str, workspace: str, rev: str, runs: int, only: str) -> None:
    old_modules = {"pipeline_as_of": _before(rev, "sales"), "customers": _before(rev, "customers")}
    new_modules = {"pipeline_as_of": sales_now, "customers": customers_now}
    conn = await asyncpg.connect(url)
    try:
        ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", workspace)
        pipeline = await conn.fetchval("SELECT id FROM pipelines WHERE workspace_id = $1 AND is_default", ws)
        print(os.getloadavg(), "load average at the start")
        for report, cases in _cases(ws, pipeline).items():
            if only and only not in report:
                continue
            for name, make, values in cases:
                old, new = make(old_modules[report]), make(new_modules[report])
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    for setting in _ROOMY:
                        await conn.execute(setting)
                    before = await conn.fetch(old.text, *old.args(values))
                    after = await conn.fetch(new.text, *new.args(values))
                assert _same(before, after), (before, after)
                print(f"== {report}, {name}: the same {len(after)} rows before and after")
                times: dict[str, list[float]] = {"before": [], "after": []}
                for _ in range(runs):
                    for label, stmt in (("before", old), ("after", new)):
                        began = time.perf_counter()
                        await _run(conn, stmt, values)
                        times[label].append((time.perf_counter() - began) * 1000)
                for label in ("before", "after"):
                    print(
                        f"   {label}: p50 {statistics.median(times[label]):.0f} ms "
                        f"(runs {', '.join(f'{t:.0f}' for t in times[label])})"
                    )
        print(os.getloadavg(), "load average at the end")
    finally:
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--workspace", default="bench")
    parser.add_argument("--before", default="main")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    asyncio.run(main(args.db, args.workspace, args.before, args.runs, args.only))
