"""``crm-api import`` and ``crm-api export``: the bulk API driven from a terminal, for people moving a CRM
by hand. They speak HTTP to a running API like any client (the file goes up in parts; the export comes down
as a stream), show progress on stderr and end with a summary."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import httpx

PART = 1 << 20
"""Bytes per uploaded part: under the API's default body limit (2 MiB)."""
POLL = 0.5


class Failed(Exception):
    """The API refused a request: the message is its problem's detail."""


def _check(r: httpx.Response, *ok: int) -> dict[str, Any]:
    if r.status_code not in ok:
        try:
            problem = r.json()
            errors = "".join(f"\n  {e['path']}: {e['message']}" for e in problem.get("errors", []))
            raise Failed(f"{r.status_code} {problem.get('detail', r.text)}{errors}")
        except ValueError:
            raise Failed(f"{r.status_code} {r.text[:500]}") from None
    body: dict[str, Any] = r.json()
    return body


def _bar(done: int, total: int | None, width: int = 30) -> str:
    if not total:
        return f"{done:,} rows"
    filled = int(width * min(done, total) / total)
    return f"[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} rows"


async def run_import(
    client: httpx.AsyncClient,
    path: Path,
    object_type: str,
    *,
    mapping: dict[str, Any] | None = None,
    upsert_key: str | None = None,
    dry_run: bool = False,
    create_missing_companies: bool = True,
    out: TextIO = sys.stderr,
    wait: Callable[[float], Any] = asyncio.sleep,
) -> dict[str, Any]:
    """Upload ``path`` in parts, start the import, follow it to its end; return the finished import."""
    format = "ndjson" if path.suffix.lower() in (".ndjson", ".jsonl") else "csv"
    body = {
        "object_type": object_type,
        "format": format,
        "mapping": mapping or {},
        "dry_run": dry_run,
        "create_missing_companies": create_missing_companies,
    }
    if upsert_key:
        body["upsert_key"] = upsert_key
    job = _check(await client.post("/v1/imports", json=body), 202)
    with path.open("rb") as f:
        n = 0
        while data := f.read(PART):
            _check(await client.put(f"/v1/imports/{job['id']}/parts/{n}", content=data), 200)
            n += 1
            print(f"\ruploaded {n} MiB", end="", file=out, flush=True)
    print(file=out)
    job = _check(await client.post(f"/v1/imports/{job['id']}/start"), 202)
    while job["status"] in ("queued", "running"):
        print(
            f"\r{job['status']:<8} {_bar(job['rows_done'], job['rows_total'])}", end="", file=out, flush=True
        )
        await wait(POLL)
        job = _check(await client.get(f"/v1/imports/{job['id']}"), 200)
    print(f"\r{job['status']:<8} {_bar(job['rows_done'], job['rows_total'])}", file=out)
    print(
        f"{'dry run: ' if dry_run else ''}{job['created']:,} created, {job['updated']:,} updated, "
        f"{job['unchanged']:,} unchanged, {job['failed']:,} failed"
        + (f"; errors: GET /v1/imports/{job['id']}/errors?format=csv" if job["failed"] else "")
        + (f"; {job['error']}" if job["error"] else ""),
        file=out,
    )
    return job


async def run_export(
    client: httpx.AsyncClient,
    object_type: str,
    target: Path,
    *,
    format: str = "csv",
    filter: Any = None,
    fields: list[str] | None = None,
    include_archived: bool = False,
    out: TextIO = sys.stderr,
    wait: Callable[[float], Any] = asyncio.sleep,
) -> dict[str, Any]:
    """Ask for an export, wait for it, stream its file to ``target``; return the finished export."""
    body: dict[str, Any] = {
        "object_type": object_type,
        "format": format,
        "include_archived": include_archived,
    }
    if filter is not None:
        body["filter"] = filter
    if fields:
        body["fields"] = fields
    job = _check(await client.post("/v1/exports", json=body), 202)
    while job["status"] in ("queued", "running"):
        print(f"\rexport {job['status']}", end="", file=out, flush=True)
        await wait(POLL)
        job = _check(await client.get(f"/v1/exports/{job['id']}"), 200)
    print(file=out)
    if job["status"] != "succeeded":
        raise Failed(f"the export {job['status']}: {job['error']}")
    size = 0
    async with client.stream("GET", f"/v1/exports/{job['id']}/file") as r:
        if r.status_code != 200:
            await r.aread()
            _check(r, 200)
        with target.open("wb") as f:
            async for chunk in r.aiter_bytes():
                f.write(chunk)
                size += len(chunk)
                print(f"\rdownloaded {size / 2**20:.1f} MiB", end="", file=out, flush=True)
    print(f"\n{job['rows']:,} {object_type} written to {target}", file=out)
    return job


def client(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def load_json(path: str | None) -> Any:
    return json.loads(Path(path).read_text()) if path else None
