"""EXPLAIN (ANALYZE, BUFFERS) of the reports' statements on the database `reports.sh` seeded, with the
default queries' parameters: where each report's time goes.

    python bench/explain_reports.py --db postgresql://postgres@127.0.0.1:5432/crm_bench_reports \\
        [--only sales_cycle] [--full]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from typing import Any

import asyncpg

from crm_api.reports import acquisition, customers, params, sales


def _period() -> dict[str, Any]:
    today = dt.date.today()
    period = params.Period(today.replace(month=1, day=1), today.replace(month=12, day=31), "month", dt.UTC)
    lower, upper = period.bounds()
    return {
        "lower": lower,
        "upper": upper,
        "first_day": period.start,
        "last_day": period.end,
        "unit": "month",
        "tz": "UTC",
    }


def _statements(ws: Any, pipeline: Any) -> dict[str, tuple[Any, dict[str, Any]]]:
    span = _period()
    bounds = {"lower": span["lower"], "upper": span["upper"]}
    now = dt.datetime.now(dt.UTC)
    as_of = dt.datetime(2026, 6, 30, tzinfo=dt.UTC)
    buyers = {
        "as_of": now,
        "currency": "USD",
        "churn_before": now - dt.timedelta(days=180),
        "tz": "UTC",
        **customers.cohort_window(now, "UTC"),
    }
    cycle = {"ws": ws, "pipeline_id": pipeline, **bounds}
    return {
        "pipeline_now": (sales._pipeline_now(False, False), {"ws": ws, "pipeline_id": pipeline}),
        "pipeline_as_of": (
            sales._pipeline_then(False, False),
            {"ws": ws, "pipeline_id": pipeline, "as_of": as_of},
        ),
        "forecast": (sales._forecast(False, False, False), {"ws": ws, **span, **sales.bucket_ranges(span)}),
        "sales_cycle_won": (sales._cycle_won(False), cycle),
        "sales_cycle_stages": (sales._cycle_stages(False), cycle),
        "customers": (customers._report(False), {"ws": ws, **buyers}),
        "customers_kept": (customers._kept(), {"ws": ws, **buyers}),
        "lead_conversion": (
            acquisition._lead_conversion(False, False),
            {"ws": ws, **{k: span[k] for k in ("lower", "upper", "unit", "tz")}},
        ),
        "lead_conversion_by_source": (
            acquisition._lead_conversion(True, False),
            {"ws": ws, **{k: span[k] for k in ("lower", "upper", "unit", "tz")}},
        ),
        "attribution": (acquisition._attribution(False), {"ws": ws, **bounds}),
        "attribution_won": (acquisition._attribution_won(False), {"ws": ws, **bounds}),
    }


async def main(url: str, workspace: str, only: str, full: bool, settings: str) -> None:
    pairs = dict(p.split("=", 1) for p in settings.split(",") if p)
    conn = await asyncpg.connect(url, server_settings=pairs)
    try:
        ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", workspace)
        pipeline = await conn.fetchval("SELECT id FROM pipelines WHERE workspace_id = $1 AND is_default", ws)
        for name, (stmt, values) in _statements(ws, pipeline).items():
            if only and only not in name:
                continue
            plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {stmt.text}", *stmt.args(values))
            lines = [r[0] for r in plan]
            jit = [line.strip() for line in lines if line.strip().startswith("Timing:")]
            print(f"== {name}: {lines[-1]} {' '.join(jit)}")
            for line in lines if full else lines[:40]:
                print("   ", line)
    finally:
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--workspace", default="bench")
    parser.add_argument("--only", default="")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--settings", default="", help="name=value,... for the session: work_mem=64MB")
    args = parser.parse_args()
    asyncio.run(main(args.db, args.workspace, args.only, args.full, args.settings))
