"""The attribution roll-up against the tables, and lead conversion from the kept facts against the history,
on a bench database: both answers for a few periods and time zones, compared, with the time each took (one
connection, in turns; lead conversion with the report's ``work_mem`` and ``jit`` settings).

    python bench/rollup_check.py --db postgresql://postgres@127.0.0.1:5432/crm_bench [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
import zoneinfo

import asyncpg

from crm_api.reports import acquisition, rollup

PERIODS = [
    ("2026-01-01", "2026-12-31", "UTC"),
    ("2026-01-01", "2026-12-31", "Asia/Kathmandu"),
    # St John's is 3:30 behind: its midnights cut an hour of the seeded contacts in two
    ("2026-11-01", "2026-11-30", "America/St_Johns"),
    ("2026-12-01", "2026-12-01", "America/St_Johns"),
    ("2026-11-30", "2026-12-01", "Asia/Kolkata"),
]


def _bounds(start: str, end: str, tz: str) -> dict[str, dt.datetime]:
    zone = zoneinfo.ZoneInfo(tz)
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end) + dt.timedelta(days=1)
    return {
        "lower": dt.datetime.combine(first, dt.time(), zone).astimezone(dt.UTC),
        "upper": dt.datetime.combine(last, dt.time(), zone).astimezone(dt.UTC),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="", help="attribution or lead")
    args = parser.parse_args()
    conn = await asyncpg.connect(args.db)
    ws = await conn.fetchval("SELECT workspace_id FROM contacts GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
    for start, end, tz in PERIODS if args.only != "lead" else []:
        period = _bounds(start, end, tz)
        times: dict[str, list[float]] = {"rollup": [], "tables": []}
        answers = {}
        for _ in range(args.runs):
            for name, run in (
                ("rollup", rollup.attribution),
                ("tables", acquisition.attribution_from_tables),
            ):
                began = time.perf_counter()
                counts, won = await run(conn, ws, False, period)
                times[name].append((time.perf_counter() - began) * 1000)
                answers[name] = (
                    sorted((r["grp"] or "", r["contacts"], r["leads"], r["customers"]) for r in counts),
                    sorted(
                        (r["grp"] or "", r["currency"], r["amount"]) for r in won if r["amount"] is not None
                    ),
                )
        same = "same" if answers["rollup"] == answers["tables"] else "DIFFERENT"
        print(
            f"{start}..{end} {tz:18} {same:9} rollup p50 {statistics.median(times['rollup']):8.1f} ms"
            f"   tables p50 {statistics.median(times['tables']):8.1f} ms"
            f"   {sum(r[1] for r in answers['rollup'][0])} contacts"
        )
    for start, end, tz in PERIODS if args.only != "attribution" else []:
        for by_source in (False, True):
            first_day = dt.date.fromisoformat(start)
            period = {**_bounds(start, end, tz), "first_day": first_day, "unit": "month", "tz": tz}
            times = {"kept": [], "history": []}
            found = {}
            for _ in range(args.runs):
                for name, lead in (
                    ("kept", acquisition.lead_conversion),
                    ("history", acquisition.lead_conversion_from_history),
                ):
                    began = time.perf_counter()
                    rows = await lead(conn, ws, by_source, False, period)
                    times[name].append((time.perf_counter() - began) * 1000)
                    found[name] = sorted(rows, key=str)
            same = "same" if found["kept"] == found["history"] else "DIFFERENT"
            print(
                f"lead {start}..{end} {tz:18} source={by_source!s:5} {same:9}"
                f" kept p50 {statistics.median(times['kept']):8.1f} ms"
                f"   history p50 {statistics.median(times['history']):8.1f} ms"
                f"   {sum(r['leads'] for r in found['kept'])} leads"
            )
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
