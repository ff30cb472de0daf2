"""Imports and exports end to end: a fresh database, `crm-api serve` and one `crm-api worker` as processes.

python bench/bulk.py [--pg postgresql://postgres@127.0.0.1:5432] [--rows 100000] [--export-rows 1000000]
    [--upload-mib 1024]

Import: `--rows` contacts from CSV, each with a company by domain (1,000 companies made first), uploaded in
1 MiB parts, timed from the first part to `succeeded` (events included), with the worker's peak RSS.
Upload: `--upload-mib K` first sends a CSV of K MiB whole as multipart/form-data (generated as it is sent),
timed to stored and queued, with the API process's peak RSS.
Export: `--export-rows` contacts seeded with SQL (seed.py), exported to CSV, timed from the request to
`succeeded` and through the download, with the worker's peak RSS. 0 skips either.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import psutil
from seed import seed_direct

DB = "crm_bench_bulk"
PORT = 8766
PART = 1 << 20


def _csv(rows: int) -> bytes:
    lines = ["email,first_name,last_name,company.domain,lifecycle_stage,tags"]
    lines += [
        f"b{i}@example.com,First{i},Last{i % 997},co{i % 1000}.example,lead,imported" for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


class Peak:
    """The peak resident memory of a process, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            await asyncio.sleep(0.05)

    def stop(self) -> float:
        self.task.cancel()
        return self.peak / 2**20


async def _wait(client: httpx.AsyncClient, url: str) -> dict[str, object]:
    while True:
        job = (await client.get(url)).json()
        if job["status"] not in ("queued", "running", "uploading"):
            return job  # type: ignore[no-any-return]
        await asyncio.sleep(0.2)


async def bench_import(client: httpx.AsyncClient, worker: int, rows: int, batch: bool = True) -> None:
    items = [{"name": f"Co {i}", "domain": f"co{i}.example"} for i in range(1000)]
    for start in (0, 500):
        r = await client.post("/v1/companies/batch", json={"items": items[start : start + 500]})
        assert r.status_code == 200, r.text
    data = _csv(rows)
    began = time.perf_counter()
    job = (
        await client.post(
            "/v1/imports", json={"object_type": "contacts", "format": "csv", "upsert_key": "email"}
        )
    ).json()
    for n, at in enumerate(range(0, len(data), PART)):
        r = await client.put(f"/v1/imports/{job['id']}/parts/{n}", content=data[at : at + PART])
        assert r.status_code == 200, r.text
    peak = Peak(worker)
    assert (await client.post(f"/v1/imports/{job['id']}/start")).status_code == 202
    done = await _wait(client, f"/v1/imports/{job['id']}")
    took = time.perf_counter() - began
    rss = peak.stop()
    assert done["status"] == "succeeded" and done["created"] == rows, done
    cpu = psutil.Process(worker).cpu_times()
    # printed before the comparison below, which a loaded machine may fail (a batch past the statement
    # timeout)
    print(
        f"import: {rows:,} contacts ({len(data) / 2**20:.1f} MiB CSV) in {took:.1f} s, "
        f"{rows / took:,.0f} rows/s, worker peak RSS {rss:.0f} MiB, "
        f"worker CPU {cpu.user + cpu.system:.1f} s, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if not batch:
        return
    began = time.perf_counter()  # the same rows through the batch endpoint, one batch at a time, to compare
    lines = data.decode().splitlines()[1:]
    for start in range(0, len(lines), 500):
        items = [
            {"email": "c" + e[1:], "first_name": f, "last_name": la, "lifecycle_stage": s, "tags": [t]}
            for e, f, la, _, s, t in (line.split(",") for line in lines[start : start + 500])
        ]
        r = await client.post("/v1/contacts/batch", json={"items": items, "mode": "upsert"})
        assert r.status_code == 200, r.text
    batched = time.perf_counter() - began
    print(
        f"batch endpoint: the same {rows:,} contacts (no company lookup), 500 per request, one at a time, in "
        f"{batched:.1f} s, {rows / batched:,.0f} rows/s"
    )


async def bench_upload(client: httpx.AsyncClient, serve: int, mib: int) -> None:
    """An import's file of ``mib`` MiB sent whole as multipart/form-data, generated as it is sent: the
    time to stored and queued, and the API process's peak RSS (flat: it holds one read, not the file).
    The import is cancelled once queued (the upload is what this measures)."""
    boundary = "bench-bulk-boundary"
    line = b"someone@example.com,First,Last,co1.example,lead,imported\n"
    part = line * (PART // len(line))
    job = {"object_type": "contacts", "format": "csv", "dry_run": True}

    async def body() -> AsyncIterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="job"\r\n'
            f"Content-Type: application/json\r\n\r\n{json.dumps(job)}\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'
            "email,first_name,last_name,company.domain,lifecycle_stage,tags\n"
        ).encode()
        for _ in range(mib):
            yield part
        yield f"\r\n--{boundary}--\r\n".encode()

    peak = Peak(serve)
    began = time.perf_counter()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    r = await client.post("/v1/imports", content=body(), headers=headers, timeout=3600)
    took = time.perf_counter() - began
    rss = peak.stop()
    assert r.status_code == 202, r.text
    await client.post(f"/v1/imports/{r.json()['id']}/cancel")
    print(
        f"upload: {mib:,} MiB as multipart/form-data stored in {r.json()['parts']:,} parts in {took:.1f} s "
        f"({mib / took:.1f} MiB/s), API process peak RSS {rss:.0f} MiB"
    )


async def bench_export(client: httpx.AsyncClient, worker: int, url: str, rows: int) -> None:
    seeded = await seed_direct(url, "bench", rows)
    print(f"export: seeded {rows:,} contacts with SQL in {seeded:.1f} s")
    peak = Peak(worker)
    began = time.perf_counter()
    job = (await client.post("/v1/exports", json={"object_type": "contacts", "format": "csv"})).json()
    done = await _wait(client, f"/v1/exports/{job['id']}")
    written = time.perf_counter() - began
    rss = peak.stop()
    assert done["status"] == "succeeded", done
    size = 0
    async with client.stream(
        "GET", f"/v1/exports/{job['id']}/file", headers={"Accept-Encoding": "identity"}
    ) as r:
        async for chunk in r.aiter_raw():
            size += len(chunk)
    took = time.perf_counter() - began
    print(
        f"export: {done['rows']:,} contacts to CSV ({size / 2**20:.0f} MiB) written in {written:.1f} s, "
        f"downloaded by {took:.1f} s, {done['rows'] / took:,.0f} rows/s, worker peak RSS {rss:.0f} MiB"
    )


async def bench_reader(mib: int) -> None:
    """The file reader alone (no database): a CSV of ``mib`` MiB in 1 MiB parts, read to its end, with this
    process's RSS before and after: flat memory means the file never sits in memory whole."""
    from crm_api.bulk.rows import CsvReader

    line = b"someone@example.com,First,Last,co1.example,lead,imported\n"
    part = line * (PART // len(line))

    async def parts() -> AsyncIterator[bytes]:
        yield b"email,first_name,last_name,company.domain,lifecycle_stage,tags\n"
        for _ in range(mib):
            yield part

    me = psutil.Process()
    before = me.memory_info().rss
    rows = 0
    began = time.perf_counter()
    async for batch in CsvReader().records(parts()):
        rows += len(batch)
    took = time.perf_counter() - began
    after = me.memory_info().rss
    print(
        f"reader: {mib:,} MiB of CSV ({rows:,} rows) in {took:.1f} s; RSS {before / 2**20:.0f} MiB before, "
        f"{after / 2**20:.0f} MiB after"
    )


async def _fresh_database(pg: str) -> None:
    admin = await asyncpg.connect(f"{pg}/postgres")
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {DB}")
    await admin.close()


async def _drive(
    key: str, worker: int, url: str, rows: int, export_rows: int, serve: int, upload_mib: int, batch: bool
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", headers=headers, timeout=60) as client:
        began = time.monotonic()
        while True:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() - began < 180, "crm-api serve did not start (see its log)"
            await asyncio.sleep(0.2)
        if upload_mib:
            await bench_upload(client, serve, upload_mib)
        if rows:
            await bench_import(client, worker, rows, batch)
        if export_rows:
            await bench_export(client, worker, url, export_rows)


def start(pg: str) -> tuple[str, subprocess.Popen[bytes], subprocess.Popen[bytes], str]:
    """A fresh database ``DB``, a key of workspace ``bench``, ``crm-api serve`` on ``PORT`` and one
    ``crm-api worker``: the key, the two processes and the database's URL."""
    asyncio.run(_fresh_database(pg))
    url = f"{pg}/{DB}"
    crm = [sys.executable, "-m", "crm_api"]
    secret = subprocess.run([*crm, "secrets", "new-key"], capture_output=True, text=True, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    logs = Path(tempfile.gettempdir())  # what the processes said, when a run goes wrong
    env.update(
        CRM_DATABASE_URL=url,
        CRM_SECRET_KEY=secret.stdout.strip(),
        CRM_BULK_POLL_SECONDS="0.2",
        CRM_DATA_DIR=str(logs / "crm-bench-bulk"),  # serve's first-start admin key goes here, not to ~
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
        [*crm, "serve", "--port", str(PORT), "--no-dispatcher"],
        env=env,
        stderr=(logs / "bulk-serve.log").open("wb"),
    )
    worker = subprocess.Popen([*crm, "worker"], env=env, stderr=(logs / "bulk-worker.log").open("wb"))
    return key, serve, worker, url


def main() -> None:
    global PORT, DB
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--reader-mib", type=int, default=0, help="only time the file reader on this many MiB"
    )
    parser.add_argument(
        "--upload-mib", type=int, default=0, help="first send a file of this many MiB as multipart/form-data"
    )
    parser.add_argument(
        "--no-batch",
        action="store_true",
        help="skip the batch endpoint's run of the same rows after the import",
    )
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--db", default=DB, help="the database, made afresh")
    args = parser.parse_args()
    PORT, DB = args.port, args.db
    if args.reader_mib:
        asyncio.run(bench_reader(args.reader_mib))
        return
    key, serve, worker, url = start(args.pg)
    try:
        asyncio.run(
            _drive(
                key,
                worker.pid,
                url,
                args.rows,
                args.export_rows,
                serve.pid,
                args.upload_mib,
                not args.no_batch,
            )
        )
    finally:
        for p in (serve, worker):
            p.terminate()
            p.wait()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
