"""An import's file sent whole in ``POST /v1/imports`` as ``multipart/form-data``: a ``job`` part, then the
``file`` part, streamed into stored parts of 1 MiB, past the JSON body limit (the suite's is 256 KiB)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import httpx
import pytest
from jobs import drain

JOB = {"object_type": "contacts", "format": "csv", "upsert_key": "email", "mapping": {"notes": None}}


def _form(job: Any, file: bytes, job_first: bool = True) -> dict[str, Any]:
    parts = [
        ("job", (None, json.dumps(job) if not isinstance(job, str) else job, "application/json")),
        ("file", ("contacts.csv", file, "text/csv")),
    ]
    return {"files": parts if job_first else parts[::-1]}


async def test_a_file_past_the_body_limit_arrives_in_one_request(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    rows = 1300
    notes = "n" * 2000  # 2.5 MiB in all: ten times the body limit, three stored parts
    file = ("email,first_name,notes\n" + "".join(f"u{i}@x.com,U{i},{notes}\n" for i in range(rows))).encode()
    r = await api.post("/v1/imports", **_form(JOB, file))
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["status"], job["parts"], job["bytes"]) == ("queued", 3, len(file))
    ws = api.workspace_id  # type: ignore[attr-defined]
    sizes = await pool.fetch(
        "SELECT length(data) AS n FROM import_parts WHERE workspace_id = $1 AND import_id = $2 ORDER BY part",
        ws,
        job["id"],
    )
    assert [s["n"] for s in sizes] == [1 << 20, 1 << 20, len(file) - (2 << 20)]
    await drain(pool)
    done = (await api.get(f"/v1/imports/{job['id']}")).json()
    assert (done["status"], done["rows_total"], done["created"], done["failed"]) == (
        "succeeded",
        rows,
        rows,
        0,
    )
    first = (await api.get("/v1/contacts", params={"email": "u0@x.com"})).json()["data"]
    assert [c["first_name"] for c in first] == ["U0"]

    # the same body as JSON is over the body limit
    big = {**JOB, "file": file.decode()}
    assert (await api.post("/v1/imports", json=big)).status_code == 413


@pytest.mark.parametrize(
    ("form", "status", "path"),
    [
        (_form(JOB, b"email\n", job_first=False), 422, "/job"),
        ({"files": [("job", (None, json.dumps(JOB), "application/json"))]}, 422, "/file"),
        (_form({**JOB, "format": "xlsx"}, b"email\n"), 422, "/job/format"),
        (_form({**JOB, "upsert_key": "first_name"}, b"email\n"), 422, "/job/upsert_key"),
        (_form({**JOB, "upsert_key": "domain"}, b"email\n"), 422, "/job/upsert_key"),
        (_form({**JOB, "file": "email\n"}, b"email\n"), 422, "/job/file"),
        ({"files": [("other", (None, "x", "text/plain"))]}, 422, "/other"),
    ],
)
async def test_a_form_that_is_not_a_job_then_its_file_is_refused_and_leaves_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool, form: dict[str, Any], status: int, path: str
) -> None:
    r = await api.post("/v1/imports", **form)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert path in [e["path"] for e in r.json()["errors"]]
    ws = api.workspace_id  # type: ignore[attr-defined]
    assert await pool.fetchval("SELECT count(*) FROM imports WHERE workspace_id = $1", ws) == 0


async def test_a_broken_body_or_an_idempotency_key_is_a_400(api: httpx.AsyncClient) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=b0"}
    body = b'--b0\r\nContent-Disposition: form-data; name="job"\r\n\r\n{}'  # no closing boundary
    r = await api.post("/v1/imports", content=body, headers=headers)
    assert r.status_code == 400 and "multipart" in r.json()["detail"], r.text
    r = await api.post("/v1/imports", **_form(JOB, b"email\n"), headers={"Idempotency-Key": "k1"})
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["detail"], r.text
