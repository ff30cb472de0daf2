"""An import of a big file, the worker's memory sampled all along: flat means the file is never held whole.

python bench/bulk_memory.py [--pg postgresql://postgres@127.0.0.1:5432] [--mib 64] [--file /tmp/big.csv]
    [--dry-run] [--seconds S] [--every 30]

Writes a CSV of `--mib` MiB to disk a block at a time (contacts, unique emails, a company by domain each
among 1,000 domains that do not exist yet, so `create_missing_companies` makes them), sends it as
`multipart/form-data` read from disk as it goes, then samples the worker's RSS every 0.2 s until the
import ends and prints it at each tenth of the rows, with its peak. The issue's target: a 1 GB file
(`--mib 1024`, about 17 million rows) with the worker under 300 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import bulk
import httpx
import psutil

BLOCK = 1 << 20
HEADER = b"email,first_name,last_name,company.domain,lifecycle_stage,tags\n"


def write_file(path: Path, mib: int) -> int:
    """``mib`` MiB of rows at ``path``, written a block at a time (never the whole file in memory); the
    number of rows."""
    rows = 0
    with path.open("wb") as f:
        f.write(HEADER)
        size = len(HEADER)
        while size < mib * BLOCK:
            block = b"".join(
                b"m%d@example.com,First%d,Last%d,mem%d.example,lead,imported\n" % (i, i, i % 997, i % 1000)
                for i in range(rows, rows + 10_000)
            )
            f.write(block)
            size += len(block)
            rows += 10_000
    return rows


async def _body(path: Path, boundary: str, dry_run: bool) -> AsyncIterator[bytes]:
    job = {"object_type": "contacts", "format": "csv", "upsert_key": "email", "dry_run": dry_run}
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="job"\r\n'
        f"Content-Type: application/json\r\n\r\n{json.dumps(job)}\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'
    ).encode()
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            yield block
    yield f"\r\n--{boundary}--\r\n".encode()


async def run(
    key: str, worker: int, path: Path, rows: int, size: int, dry_run: bool, seconds: float, every: float
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{bulk.PORT}", headers=headers, timeout=3600
    ) as client:
        while True:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
        boundary = "bench-memory-boundary"
        began = time.perf_counter()
        r = await client.post(
            "/v1/imports",
            content=_body(path, boundary, dry_run),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert r.status_code == 202, r.text
        uploaded = time.perf_counter() - began
        url = f"/v1/imports/{r.json()['id']}"
        process = psutil.Process(worker)
        peak, marks, tenth, beat = 0, [], 1, every
        cpu0 = sum(process.cpu_times()[:2])
        while True:
            rss = process.memory_info().rss
            peak = max(peak, rss)
            job = (await client.get(url)).json()
            at = time.perf_counter() - began
            while job["rows_done"] >= tenth * rows // 10 and tenth <= 10:
                marks.append((job["rows_done"], rss, at))
                tenth += 1
            if seconds and at >= beat:
                marks.append((job["rows_done"], rss, at))
                beat += every
            if job["status"] not in ("queued", "running"):
                break
            if seconds and at >= seconds:
                await client.post(f"{url}/cancel")
                job = (await client.get(url)).json()
                break
            await asyncio.sleep(0.2)
        cpu = sum(process.cpu_times()[:2]) - cpu0
    took = time.perf_counter() - began
    if seconds and job["status"] == "cancelled":
        done = job["rows_done"]
        print(
            f"memory: {size / 2**20:,.0f} MiB CSV, {rows:,} contacts, dry run {dry_run}: stopped after "
            f"{took:.1f} s (uploaded in {uploaded:.1f} s) with {done:,} rows done of {job['rows_total']:,} "
            f"({done / max(took - uploaded, 1e-9):,.0f} rows/s after the upload; worker CPU {cpu:.1f} s); "
            f"worker RSS peak {peak / 2**20:.0f} MiB; load average {os.getloadavg()[0]:.1f}"
        )
        for done, rss, at in sorted(set(marks), key=lambda m: m[2]):
            print(f"  {done:>12,} rows at {at:7.1f} s: RSS {rss / 2**20:.0f} MiB")
        return
    counted = "created" if not dry_run else "rows_done"
    assert job["status"] == "succeeded" and job[counted] == rows, job
    print(
        f"memory: {size / 2**20:,.0f} MiB CSV, {rows:,} contacts, uploaded in {uploaded:.1f} s, "
        f"imported by {took:.1f} s ({rows / took:,.0f} rows/s, dry run {dry_run}, worker CPU {cpu:.1f} s); "
        f"worker RSS peak {peak / 2**20:.0f} MiB; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for done, rss, at in marks:
        print(f"  {done:>12,} rows at {at:7.1f} s: RSS {rss / 2**20:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--file", type=Path, default=Path("/tmp/crm-bench-memory.csv"))
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--db", default="crm_bench_bulk_memory", help="the database, made afresh")
    parser.add_argument("--dry-run", action="store_true", help="import with dry_run: nothing written")
    parser.add_argument("--seconds", type=float, default=0, help="stop the import after this long")
    parser.add_argument("--every", type=float, default=30, help="with --seconds: an RSS sample this often")
    args = parser.parse_args()
    bulk.PORT, bulk.DB = args.port, args.db
    began = time.perf_counter()
    rows = write_file(args.file, args.mib)
    print(f"memory: wrote {rows:,} rows to {args.file} in {time.perf_counter() - began:.1f} s")
    key, serve, worker, _ = bulk.start(args.pg)
    try:
        asyncio.run(
            run(
                key,
                worker.pid,
                args.file,
                rows,
                args.file.stat().st_size,
                args.dry_run,
                args.seconds,
                args.every,
            )
        )
    finally:
        for p in (serve, worker):
            p.terminate()
            p.wait()
        args.file.unlink()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
