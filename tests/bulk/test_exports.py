"""Exports: a whole resource (or what a filter picks) written by the workers' job loop from one snapshot,
as CSV or NDJSON, downloaded whole or gzipped."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
from typing import Any

import asyncpg
import httpx
import pytest
from jobs import drain

from crm_api.bulk import exports, worker
from crm_api.config import Settings


async def export(api: httpx.AsyncClient, pool: asyncpg.Pool, **body: Any) -> tuple[dict[str, Any], bytes]:
    r = await api.post("/v1/exports", json=body)
    assert r.status_code == 202, r.text
    await drain(pool)
    job = (await api.get(f"/v1/exports/{r.json()['id']}")).json()
    assert job["status"] == "succeeded", job
    f = await api.get(f"/v1/exports/{job['id']}/file", headers={"Accept-Encoding": "identity"})
    assert f.status_code == 200
    return job, f.content


async def test_a_csv_export_has_the_fields_asked_for_and_reads_back_as_an_import(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await api.post(
        "/v1/custom-fields", json={"object_type": "contact", "name": "tier", "label": "T", "type": "text"}
    )
    items = [
        {"email": "a@x.com", "first_name": "Ada", "tags": ["vip", "b"], "custom_fields": {"tier": "gold"}},
        {"email": "b@x.com", "first_name": 'Bob "the, builder"', "lifecycle_stage": "lead"},
        {"email": "c@x.com", "first_name": "Gone"},
    ]
    ids = [
        x["object"]["id"]
        for x in (await api.post("/v1/contacts/batch", json={"items": items})).json()["results"]
    ]
    await api.delete(f"/v1/contacts/{ids[2]}")
    fields = ["email", "first_name", "tags", "custom_fields.tier", "lifecycle_stage"]
    job, data = await export(api, pool, object_type="contacts", format="csv", fields=fields)
    assert (job["rows"], job["bytes"]) == (2, len(data))
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert rows[0] == fields
    assert sorted(rows[1:]) == [
        ["a@x.com", "Ada", "vip;b", "gold", ""],
        ["b@x.com", 'Bob "the, builder"', "", "", "lead"],
    ]

    everything, _ = await export(
        api, pool, object_type="contacts", format="csv", fields=fields, include_archived=True
    )
    assert everything["rows"] == 3

    # the file imports back as it is, changing nothing
    r = await api.post(
        "/v1/imports",
        json={"object_type": "contacts", "format": "csv", "upsert_key": "email", "file": data.decode()},
    )
    await drain(pool)
    back = (await api.get(f"/v1/imports/{r.json()['id']}")).json()
    assert (back["unchanged"], back["failed"]) == (2, 0), back


async def test_an_ndjson_export_follows_the_filter_and_gzips_when_asked(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    items = [{"name": f"C{i}", "domain": f"c{i}.com", "employee_count": i} for i in range(30)]
    await api.post("/v1/companies/batch", json={"items": items})
    flt = {"field": "employee_count", "op": "gte", "value": 25}
    body = {"object_type": "companies", "format": "ndjson", "filter": flt}
    job, data = await export(api, pool, **body)
    objects = [httpx.Response(200, content=line).json() for line in data.splitlines()]
    assert job["rows"] == 5 and sorted(o["employee_count"] for o in objects) == [25, 26, 27, 28, 29]
    assert {"id", "name", "domain", "custom_fields", "created_at"} <= set(objects[0])

    r = await api.get(f"/v1/exports/{job['id']}/file", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"  # httpx has already inflated it
    assert r.content == data
    raw = [chunk async for chunk in (await _raw(api, f"/v1/exports/{job['id']}/file")).aiter_raw()]
    assert gzip.decompress(b"".join(raw)) == data


async def _raw(api: httpx.AsyncClient, url: str) -> httpx.Response:
    request = api.build_request("GET", url, headers={"Accept-Encoding": "gzip"})
    return await api.send(request, stream=True)


async def test_a_write_committed_during_an_export_is_not_in_it_even_in_part(
    api: httpx.AsyncClient, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports, "PART_BYTES", 2048)  # many small parts, so the export is seen mid-way
    monkeypatch.setattr(exports, "FETCH", 20)
    ws = api.workspace_id  # type: ignore[attr-defined]
    for start in (0, 500):
        items = [{"email": f"p{i}@x.com", "title": "before"} for i in range(start, start + 500)]
        assert (await api.post("/v1/contacts/batch", json={"items": items})).status_code == 200
    r = await api.post(
        "/v1/exports", json={"object_type": "contacts", "format": "csv", "fields": ["email", "title"]}
    )
    job_id = r.json()["id"]

    writer = await pool.take()  # another client's transaction, changing every row at once
    tx = writer.transaction()
    await tx.start()
    await writer.execute(
        "UPDATE contacts SET title = 'after', version = version + 1 WHERE workspace_id = $1", ws
    )
    running = asyncio.create_task(worker.run_once(pool, Settings(bulk_lease_seconds=30), asyncio.Event()))
    query = "SELECT count(*) FROM export_parts WHERE workspace_id = $1 AND export_id = $2"
    while await pool.fetchval(query, ws, r.json()["id"]) == 0:
        assert not running.done()
        await asyncio.sleep(0.005)
    await tx.commit()  # while the export is under way: its first part is written
    await pool.release(writer)
    await running

    job = (await api.get(f"/v1/exports/{job_id}")).json()
    assert job["rows"] == 1000 and job["bytes"] > 2048 * 2
    data = (await api.get(f"/v1/exports/{job_id}/file")).text
    titles = [row[1] for row in csv.reader(io.StringIO(data))][1:]
    assert titles == ["before"] * 1000

    _, later = await export(api, pool, object_type="contacts", format="csv", fields=["email", "title"])
    assert {row[1] for row in csv.reader(io.StringIO(later.decode()))} == {"title", "after"}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"fields": ["email", "nonsense"]}, "/fields/1"),
        ({"filter": {"field": "nonsense", "op": "eq", "value": 1}}, "/filter"),
        ({"format": "xml"}, "/format"),
    ],
)
async def test_an_export_that_cannot_run_is_refused_naming_the_field(
    api: httpx.AsyncClient, body: dict[str, Any], path: str
) -> None:
    r = await api.post("/v1/exports", json={"object_type": "contacts", "format": "csv", **body})
    assert r.status_code == 422, r.text
    assert any(e["path"].startswith(path) for e in r.json()["errors"]), r.json()


async def test_a_file_is_served_once_ready_to_its_workspace_only(
    make_client: Any, pool: asyncpg.Pool
) -> None:
    reader = await make_client(scopes=["exports:write", "exports:read"])
    r = await reader.post("/v1/exports", json={"object_type": "contacts", "format": "csv"})
    assert r.status_code == 403 and "contacts:read" in r.json()["detail"]
    api = await make_client()
    r = await api.post("/v1/exports", json={"object_type": "contacts", "format": "csv"})
    assert (await api.get(f"/v1/exports/{r.json()['id']}/file")).status_code == 409
    other = await make_client()
    assert (await other.get(f"/v1/exports/{r.json()['id']}")).status_code == 404
    await drain(pool)
    f = await api.get(f"/v1/exports/{r.json()['id']}/file")
    assert f.status_code == 200 and f.text.startswith("id,")


async def test_an_export_past_its_seven_days_is_gone_with_its_file(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    job, _ = await export(api, pool, object_type="companies", format="csv")
    assert job["expires_at"] > job["created_at"]
    ws = api.workspace_id  # type: ignore[attr-defined]
    await pool.execute(
        "UPDATE exports SET expires_at = now() - interval '1 second' WHERE workspace_id = $1 AND id = $2",
        ws,
        job["id"],
    )
    assert (await api.get(f"/v1/exports/{job['id']}")).status_code == 404  # expired: not served
    await drain(pool)  # an idle worker purges it
    parts = await pool.fetchval("SELECT count(*) FROM export_parts WHERE workspace_id = $1", ws)
    assert parts == 0
    assert await pool.fetchval("SELECT count(*) FROM exports WHERE workspace_id = $1", ws) == 0


async def test_csv_cells_made_by_postgresql_read_as_the_api_writes_them(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The COPY export makes each cell in SQL: every field type reads back as the Python conversion
    (``Formatter``) writes it, JSON columns equal as JSON."""
    definitions = [
        {"name": "seats", "type": "number"},
        {"name": "ratio", "type": "number"},
        {"name": "paid", "type": "boolean"},
        {
            "name": "areas",
            "type": "multi_enum",
            "options": [{"value": v, "label": v} for v in ("north", "south")],
        },
        {"name": "plan", "type": "text"},
    ]
    for d in definitions:
        r = await api.post("/v1/custom-fields", json={"object_type": "contact", "label": d["name"], **d})
        assert r.status_code == 201, r.text
    items = [
        {
            "email": "cells@x.com",
            "first_name": 'Quote " and, comma',
            "tags": ["a", "b c"],
            "marketing_consent": True,
            "custom_fields": {"seats": 12, "ratio": 0.25, "paid": False, "areas": ["north", "south"]},
            "external_ids": {"erp": "E-1"},
        },
        {"email": "bare@x.com", "last_name": "Line\nbreak", "custom_fields": {"plan": ""}},
    ]
    assert (await api.post("/v1/contacts/batch", json={"items": items})).status_code == 200
    spec = exports.OBJECTS["contacts"]
    fields = [*exports.field_names(spec), *(f"custom_fields.{d['name']}" for d in definitions)]
    _, data = await export(api, pool, object_type="contacts", format="csv", fields=fields)
    ws = api.workspace_id  # type: ignore[attr-defined]
    async with pool.acquire() as conn:
        params, where = await exports.conditions(conn, spec, ws, None, False)
        stmt = exports._statement(spec, where)
        rows = await conn.fetch(stmt.text, *stmt.args(params.values))
    formatter = exports.Formatter(spec, "csv", fields)
    expected = list(csv.reader(io.StringIO((formatter.header() + formatter.rows(rows)).decode())))
    got = list(csv.reader(io.StringIO(data.decode())))
    assert len(got) == len(expected) == 3
    jsons = {i for i, f in enumerate(fields) if f in ("custom_fields", "external_ids")}
    for want, have in zip(expected, got, strict=True):
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            if i in jsons and want is not expected[0]:
                assert json.loads(h) == json.loads(w), fields[i]
            else:
                assert h == w, (fields[i], h, w)
    first = dict(zip(got[0], got[1], strict=True))
    assert first["tags"] == "a;b c" and first["marketing_consent"] == "true"
    assert (first["custom_fields.seats"], first["custom_fields.ratio"]) == ("12", "0.25")
    assert (first["custom_fields.paid"], first["custom_fields.areas"]) == ("false", "north;south")
    assert first["created_at"].endswith("Z") and "+" not in first["created_at"]
