"""The sales cycle's per-stage statement before and after the stays kept at write time (migration 0027), on
the database `reports.sh` seeded (migrated to 0027 or later): both answers compared in one transaction (the
same now()), then each timed in turns, and one EXPLAIN (ANALYZE, BUFFERS) of each.

    python bench/cycle_before_after.py --db postgresql://postgres@127.0.0.1:5432/crm_bench_reports \\
        [--before main] [--runs 5]

``--before`` names the git revision whose ``src/crm_api/reports/sales.py`` is the old statement (it reads
only the history's older columns, so it runs on the new schema).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import asyncpg

from crm_api.reports import params, sales

_ROOMY = ("SET LOCAL work_mem = '64MB'", "SET LOCAL jit = off")  # as reports/roomy.py


def _before(rev: str, module_name: str = "sales") -> Any:
    """``crm_api.reports.<module_name>`` as it was at ``rev``."""
    text = subprocess.run(
        ["git", "show", f"{rev}:src/crm_api/reports/{module_name}.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(text)
    # the module's name puts it in crm_api.reports, so its relative imports resolve
    spec = importlib.util.spec_from_file_location(f"crm_api.reports._{module_name}_before", f.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    os.unlink(f.name)
    return module


def _bounds(start: dt.date, end: dt.date) -> dict[str, Any]:
    lower, upper = params.Period(start, end, "month", dt.UTC).bounds()
    return {"lower": lower, "upper": upper}


async def _run(conn: asyncpg.Connection, stmt: Any, values: dict[str, Any]) -> list[asyncpg.Record]:
    async with conn.transaction(readonly=True):
        for setting in _ROOMY:
            await conn.execute(setting)
        rows: list[asyncpg.Record] = await conn.fetch(stmt.text, *stmt.args(values))
        return rows


async def main(url: str, workspace: str, rev: str, runs: int) -> None:
    old = _before(rev)._cycle_stages(False)
    new = sales._cycle_stages(False)
    conn = await asyncpg.connect(url)
    try:
        ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", workspace)
        pipeline = await conn.fetchval("SELECT id FROM pipelines WHERE workspace_id = $1 AND is_default", ws)
        kinds = dict(
            await conn.fetch(
                "SELECT id, kind FROM pipeline_stages WHERE workspace_id = $1 AND pipeline_id = $2",
                ws,
                pipeline,
            )
        )

        def shown(row: asyncpg.Record) -> tuple[Any, ...] | None:
            # what the report shows of a row: stages of the pipeline only, no time spent in a closed stage
            # (since 0037 the statement computes no more than that)
            if row["stage_id"] not in kinds:
                return None
            if kinds[row["stage_id"]] != "open":
                return (*tuple(row)[:3], None, None)
            return tuple(row)

        year = dt.date.today().year
        periods = {
            "this year": _bounds(dt.date(year, 1, 1), dt.date(year, 12, 31)),
            "one quarter": _bounds(dt.date(year, 7, 1), dt.date(year, 9, 30)),
        }
        print(os.getloadavg(), "load average at the start")
        for name, bounds in periods.items():
            values = {"ws": ws, "pipeline_id": pipeline, **bounds}
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                for setting in _ROOMY:
                    await conn.execute(setting)
                before = sorted(shown(r) for r in await conn.fetch(old.text, *old.args(values)))
                before = [r for r in before if r is not None]
                after = sorted(map(tuple, await conn.fetch(new.text, *new.args(values))))
            assert before == after, (before, after)
            print(f"== {name}: the same {len(after)} stages before and after (as the report shows them)")
            times: dict[str, list[float]] = {"before": [], "after": []}
            for _ in range(runs):
                for label, stmt in (("before", old), ("after", new)):
                    began = time.perf_counter()
                    await _run(conn, stmt, values)
                    times[label].append((time.perf_counter() - began) * 1000)
            for label, stmt in (("before", old), ("after", new)):
                async with conn.transaction(readonly=True):
                    for setting in _ROOMY:
                        await conn.execute(setting)
                    plan = [
                        r[0]
                        for r in await conn.fetch(
                            f"EXPLAIN (ANALYZE, BUFFERS) {stmt.text}", *stmt.args(values)
                        )
                    ]
                scans = [line.strip() for line in plan if "Scan" in line]
                print(
                    f"   {label}: p50 {statistics.median(times[label]):.0f} ms "
                    f"(runs {', '.join(f'{t:.0f}' for t in times[label])}); {plan[-1].strip()}"
                )
                for line in scans[:4]:
                    print("      ", line[:150])
        print(os.getloadavg(), "load average at the end")
    finally:
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--workspace", default="bench")
    parser.add_argument("--before", default="main")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.db, args.workspace, args.before, args.runs))
