"""What the reports pay for the roll-ups' pending rows (migration 0041: no index, scanned whole): attribution
and lead conversion (this year in UTC by month) after a fold, then with N rows pending in each table (added
in a transaction rolled back after).

    python bench/pending_scan.py --db postgresql://postgres@127.0.0.1:5432/DB [--rows 10000 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time

import asyncpg

from crm_api.reports import leads, rollup

_PERIOD = {
    "lower": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    "upper": dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
    "tz": "UTC",
    "unit": "month",
    "first_day": dt.date(2026, 1, 1),
}


async def _time(conn: asyncpg.Connection, ws: object, label: str, runs: int) -> None:
    attribution, lead = [], []
    for _ in range(runs):
        began = time.perf_counter()
        await rollup.attribution(conn, ws, False, _PERIOD)  # type: ignore[arg-type]
        attribution.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        await leads.lead_conversion(conn, ws, False, False, _PERIOD)  # type: ignore[arg-type]
        lead.append((time.perf_counter() - began) * 1000)
    print(
        f"{label}: attribution p50 {statistics.median(attribution):.1f} ms, "
        f"lead conversion p50 {statistics.median(lead):.1f} ms",
        flush=True,
    )


async def main(db: str, rows: list[int], runs: int) -> None:
    conn = await asyncpg.connect(db)
    ws = await conn.fetchval("SELECT id FROM workspaces ORDER BY created_at LIMIT 1")
    await rollup.fold(conn, wait=True)
    await _time(conn, ws, "nothing pending", runs)
    for n in rows:
        tr = conn.transaction()
        await tr.start()
        hours = "date_trunc('hour', now() - g * interval '1 minute')"
        await conn.execute(
            f"INSERT INTO attribution_pending SELECT $1, {hours}, 'ads', false, NULL, 1, 1, 0, NULL "
            "FROM generate_series(1, $2) AS g",
            ws,
            n,
        )
        await conn.execute(
            f"INSERT INTO lead_pending SELECT $1, {hours}, 'ads', false, 1 FROM generate_series(1, $2) AS g",
            ws,
            n,
        )
        await _time(conn, ws, f"{n:,} rows pending in each", runs)
        await tr.rollback()
    await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--rows", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    asyncio.run(main(args.db, args.rows, args.runs))
