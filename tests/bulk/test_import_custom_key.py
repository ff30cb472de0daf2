"""An import's ``upsert_key`` naming a unique custom field: rows update the live record holding their
value or create one holding it; a value repeated in the file updates what the earlier row wrote; a key
that is not a live unique custom field is refused when the import is asked for."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
from jobs import drain


async def _field(api: httpx.AsyncClient, name: str, type_: str = "text", unique: bool = True) -> None:
    body = {"object_type": "contact", "name": name, "label": name, "type": type_, "unique": unique}
    r = await api.post("/v1/custom-fields", json=body)
    assert r.status_code == 201, r.text


async def _run(api: httpx.AsyncClient, pool: asyncpg.Pool, csv: str, key: str, **more: Any) -> dict[str, Any]:
    body = {"object_type": "contacts", "format": "csv", "upsert_key": key, "file": csv, **more}
    r = await api.post("/v1/imports", json=body)
    assert r.status_code == 202, r.text
    await drain(pool)
    return (await api.get(f"/v1/imports/{r.json()['id']}")).json()  # type: ignore[no-any-return]


async def test_rows_match_on_a_unique_custom_field(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await _field(api, "member_no", "number")
    await _field(api, "plan", unique=False)
    held = await api.post(
        "/v1/contacts", json={"first_name": "Old", "custom_fields": {"member_no": 7, "plan": "gold"}}
    )
    assert held.status_code == 201, held.text
    csv = (
        "custom_fields.member_no,first_name,last_name\n"
        "7,Ada,Lovelace\n"  # the held value: updates that contact, keeping its plan
        "8,Bob,\n"  # a new value: creates
        "8,Bobby,Builder\n"  # the same value again: updates the contact the row before created
        ",Nobody,\n"  # no value to match on
    )
    job = await _run(api, pool, csv, "custom_fields.member_no")
    assert job["status"] == "succeeded", job
    assert (job["created"], job["updated"], job["failed"]) == (1, 2, 1), job
    errors = (await api.get(f"/v1/imports/{job['id']}/errors")).json()["data"]
    assert [(e["row"], e["column"], e["code"]) for e in errors] == [
        (4, "custom_fields.member_no", "validation_error")
    ]
    contacts = {c["custom_fields"]["member_no"]: c for c in (await api.get("/v1/contacts")).json()["data"]}
    assert set(contacts) == {7, 8}
    assert contacts[7]["id"] == held.json()["id"]
    assert (contacts[7]["first_name"], contacts[7]["custom_fields"]["plan"]) == ("Ada", "gold")
    assert (contacts[8]["first_name"], contacts[8]["last_name"]) == ("Bobby", "Builder")
    ws = api.workspace_id  # type: ignore[attr-defined]
    query = "SELECT type, count(*) AS n FROM events WHERE workspace_id = $1 AND type LIKE $2 GROUP BY type"
    types = await pool.fetch(query, ws, "contact.%")
    assert {r["type"]: r["n"] for r in types} == {"contact.created": 2, "contact.updated": 2}

    again = await _run(api, pool, csv, "custom_fields.member_no", dry_run=True)
    assert (again["created"], again["updated"], again["unchanged"], again["failed"]) == (0, 1, 2, 1), again


async def test_a_key_that_is_not_a_live_unique_custom_field_is_refused(api: httpx.AsyncClient) -> None:
    await _field(api, "tier", unique=False)
    for key in ("custom_fields.tier", "custom_fields.nothing", "custom_fields.bad name"):
        body = {"object_type": "contacts", "format": "csv", "upsert_key": key, "file": "email\n"}
        r = await api.post("/v1/imports", json=body)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert [e["path"] for e in r.json()["errors"]] == ["/upsert_key"]
