"""``crm-api import`` and ``crm-api export`` as the functions the commands run, against the app (the job
loop run in-process where the command waits)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import asyncpg
import httpx
import pytest
from jobs import drain

from crm_api import bulkcli


async def test_an_import_uploads_in_parts_and_an_export_downloads_what_it_wrote(
    api: httpx.AsyncClient, pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulkcli, "PART", 64)  # several parts, cut mid-line
    source = tmp_path / "people.csv"
    source.write_text("email,name\n" + "".join(f"p{i}@x.com,Person {i}\n" for i in range(20)) + "bad,X\n")

    async def worker(_: float) -> None:  # where the command waits, the worker works
        await drain(pool)

    out = io.StringIO()
    job = await bulkcli.run_import(
        api, source, "contacts", mapping={"name": "first_name"}, upsert_key="email", out=out, wait=worker
    )
    assert (job["status"], job["created"], job["failed"], job["parts"]) == ("succeeded", 20, 1, 7)
    assert "20 created, 0 updated, 0 unchanged, 1 failed; errors: GET /v1/imports/" in out.getvalue()

    target = tmp_path / "out.csv"
    filter = {"field": "email", "op": "starts_with", "value": "p1"}
    done = await bulkcli.run_export(
        api, "contacts", target, filter=filter, fields=["email", "first_name"], out=out, wait=worker
    )
    rows = list(csv.reader(io.StringIO(target.read_text())))
    assert done["rows"] == 11 and rows[0] == ["email", "first_name"]
    assert sorted(rows[1:])[:2] == [["p10@x.com", "Person 10"], ["p11@x.com", "Person 11"]]


async def test_a_refused_import_says_why(api: httpx.AsyncClient, tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_text("email\n")
    with pytest.raises(bulkcli.Failed, match="/mapping/email"):
        await bulkcli.run_import(api, source, "contacts", mapping={"email": "nope"}, out=io.StringIO())
