"""Imports: a file of contacts or companies written through the batch upsert in chunks by the workers'
job loop (run here in-process, one job at a time), with per-row errors, dry runs, parts and cancels."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest
from jobs import drain


async def run_import(api: httpx.AsyncClient, pool: asyncpg.Pool, **body: Any) -> dict[str, Any]:
    r = await api.post("/v1/imports", json=body)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    await drain(pool)
    job = (await api.get(f"/v1/imports/{r.json()['id']}")).json()
    assert job["status"] in ("succeeded", "failed"), job
    return job  # type: ignore[no-any-return]


async def errors_of(api: httpx.AsyncClient, job: dict[str, Any]) -> list[tuple[int, str | None, str]]:
    r = await api.get(f"/v1/imports/{job['id']}/errors", params={"limit": 1000})
    return [(e["row"], e["column"], e["code"]) for e in r.json()["data"]]


async def events(pool: asyncpg.Pool, api: httpx.AsyncClient, type_: str) -> int:
    ws = api.workspace_id  # type: ignore[attr-defined]
    n: int = await pool.fetchval(
        "SELECT count(*) FROM events WHERE workspace_id = $1 AND type = $2", ws, type_
    )
    return n


async def test_a_csv_of_contacts_creates_then_updates_then_changes_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    r = await api.post("/v1/companies", json={"name": "Acme", "domain": "acme.com"})
    acme = r.json()["id"]
    csv = (
        "E-mail,First,Company domain,Tags,Notes\n"
        "ada@x.com,Ada,acme.com,vip;beta,ignored\n"
        'bob@x.com,"Bob, Jr.",,,\n'
    )
    mapping = {"E-mail": "email", "First": "first_name", "Company domain": "company.domain", "Tags": "tags"}
    body = {
        "object_type": "contacts",
        "format": "csv",
        "mapping": mapping,
        "upsert_key": "email",
        "file": csv,
    }
    job = await run_import(api, pool, **body)
    assert job["status"] == "succeeded"
    assert (job["rows_total"], job["rows_done"], job["created"], job["updated"], job["failed"]) == (
        2,
        2,
        2,
        0,
        0,
    )
    assert job["unmapped_columns"] == ["Notes"]
    assert job["columns"] == ["E-mail", "First", "Company domain", "Tags", "Notes"]
    ada = (await api.get("/v1/contacts", params={"email": "ada@x.com"})).json()["data"][0]
    assert (ada["first_name"], ada["company_id"], ada["tags"]) == ("Ada", acme, ["vip", "beta"])
    bob = (await api.get("/v1/contacts", params={"email": "bob@x.com"})).json()["data"][0]
    assert bob["first_name"] == "Bob, Jr." and bob["company_id"] is None
    assert await events(pool, api, "contact.created") == 2

    again = await run_import(api, pool, **body)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert await events(pool, api, "contact.updated") == 0

    changed = await run_import(api, pool, **{**body, "file": csv.replace("Ada,", "Ada Lovelace,")})
    assert (changed["created"], changed["updated"], changed["unchanged"]) == (0, 1, 1)
    assert await events(pool, api, "contact.updated") == 1
    total = (await api.get("/v1/contacts")).json()["data"]
    assert len(total) == 2


async def test_every_kind_of_bad_row_is_reported_and_the_others_are_written(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await api.post(
        "/v1/custom-fields",
        json={"object_type": "contact", "name": "score", "label": "Score", "type": "number"},
    )
    rows = [
        b"email,first_name,lifecycle_stage,company.domain,custom_fields.score",
        b"good1@x.com,Good,lead,,7",  # 1
        b"bad-encoding@x.com,Caf\xe9,lead,,",  # 2: latin-1, not UTF-8
        b"short@x.com,Short",  # 3: two columns of five
        b"not-an-email,X,lead,,",  # 4: a wrong type
        b"enum@x.com,X,wizard,,",  # 5: an unknown enum value
        b"nocompany@x.com,X,lead,nowhere.example,",  # 6: a related object that does not exist
        b"score@x.com,X,lead,,many",  # 7: a custom field of the wrong type
        b"dup@x.com,First,lead,,",  # 8
        b"dup@x.com,Second,lead,,",  # 9: the same key again: updates row 8's contact
        b"",
        b"good2@x.com,Good,,,",  # 10 (the blank line is not a row)
    ]
    body = {
        "object_type": "contacts",
        "format": "csv",
        "upsert_key": "email",
        "create_missing_companies": False,  # so row 6's company is not made
    }
    r = await api.post("/v1/imports", json=body)
    assert r.status_code == 202 and r.json()["status"] == "uploading"
    job_id = r.json()["id"]
    assert (
        await api.put(f"/v1/imports/{job_id}/parts/0", content=b"\n".join(rows) + b"\n")
    ).status_code == 200
    assert (await api.post(f"/v1/imports/{job_id}/start")).status_code == 202
    await drain(pool)
    job = (await api.get(f"/v1/imports/{job_id}")).json()
    assert job["status"] == "succeeded"
    assert (job["rows_total"], job["rows_done"]) == (10, 10)
    assert (job["created"], job["updated"], job["failed"]) == (3, 1, 6)
    problems = await errors_of(api, job)
    assert problems == [
        (2, "first_name", "encoding"),
        (3, None, "column_count"),
        (4, "email", "validation_error"),
        (5, "lifecycle_stage", "validation_error"),
        (6, "company.domain", "not_found"),
        (7, "custom_fields.score", "validation_error"),
    ]
    dup = (await api.get("/v1/contacts", params={"email": "dup@x.com"})).json()["data"]
    assert [c["first_name"] for c in dup] == ["Second"]
    good = (await api.get("/v1/contacts", params={"email": "good1@x.com"})).json()["data"][0]
    assert good["custom_fields"] == {"score": 7}

    r = await api.get(f"/v1/imports/{job_id}/errors", params={"format": "csv"})
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0] == "row,column,code,message" and len(lines) == 7
    assert lines[1].startswith("2,first_name,encoding,")

    page = (await api.get(f"/v1/imports/{job_id}/errors", params={"limit": 4})).json()
    assert page["has_more"] and len(page["data"]) == 4
    rest = (await api.get(f"/v1/imports/{job_id}/errors", params={"cursor": page["next_cursor"]})).json()
    assert [e["row"] for e in rest["data"]] == [6, 7] and not rest["has_more"]


async def test_a_dry_run_judges_every_row_and_writes_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await api.post("/v1/contacts", json={"email": "old@x.com", "first_name": "Old"})
    csv = "email,first_name\nold@x.com,Renamed\nnew@x.com,New\nbad,Bad\n"
    body = {"object_type": "contacts", "format": "csv", "upsert_key": "email", "dry_run": True, "file": csv}
    job = await run_import(api, pool, **body)
    assert (job["created"], job["updated"], job["failed"], job["dry_run"]) == (1, 1, 1, True)
    assert await errors_of(api, job) == [(3, "email", "validation_error")]
    contacts = (await api.get("/v1/contacts")).json()["data"]
    assert [(c["email"], c["first_name"]) for c in contacts] == [("old@x.com", "Old")]
    assert await events(pool, api, "contact.created") == 1  # the one made above
    assert await events(pool, api, "contact.updated") == 0


async def test_ndjson_companies_upsert_by_domain_and_bad_lines_fail_alone(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await api.post("/v1/companies", json={"name": "Old name", "domain": "acme.com"})
    lines = [
        '{"name": "Acme", "domain": "https://www.ACME.com/", "employee_count": 40}',
        "not json",
        '["an", "array"]',
        '{"name": "Globex", "domain": "globex.com", "industry": "energy", "extra": 1}',
        '{"name": "", "domain": "empty.com"}',
    ]
    body = {"object_type": "companies", "format": "ndjson", "upsert_key": "domain", "file": "\n".join(lines)}
    job = await run_import(api, pool, **body)
    assert (job["created"], job["updated"], job["failed"]) == (1, 1, 3)
    assert job["unmapped_columns"] == ["extra"]
    assert await errors_of(api, job) == [
        (2, None, "invalid_json"),
        (3, None, "invalid_json"),
        (5, "name", "validation_error"),
    ]
    acme = (await api.get("/v1/companies", params={"domain": "acme.com"})).json()["data"][0]
    assert (acme["name"], acme["employee_count"]) == ("Acme", 40)


async def test_an_upload_in_parts_may_split_lines_and_quoted_fields(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    data = 'external,first_name,title\nk1,"Multi\nline",CEO\nk2,Zoë,"Chief, ""quoted"""\n'.encode()
    r = await api.post(
        "/v1/imports",
        json={
            "object_type": "contacts",
            "format": "csv",
            "upsert_key": "external_ids.crm",
            "mapping": {"external": "external_ids.crm"},
        },
    )
    job_id = r.json()["id"]
    cuts = [0, 20, 33, len('external,first_name,title\nk1,"Multi\nline",CEO\nk2,Zo') + 1, len(data)]
    # the start before every part is there names the first missing one
    await api.put(f"/v1/imports/{job_id}/parts/1", content=data[cuts[1] : cuts[2]])
    r = await api.post(f"/v1/imports/{job_id}/start")
    assert r.status_code == 422 and r.json()["errors"][0]["message"] == "part 0 is missing"
    for n in (0, 2, 3):
        await api.put(f"/v1/imports/{job_id}/parts/{n}", content=data[cuts[n] : cuts[n + 1]])
    assert (await api.post(f"/v1/imports/{job_id}/start")).status_code == 202
    assert (await api.put(f"/v1/imports/{job_id}/parts/4", content=b"x")).status_code == 409
    await drain(pool)
    job = (await api.get(f"/v1/imports/{job_id}")).json()
    assert (job["status"], job["created"], job["failed"], job["parts"]) == ("succeeded", 2, 0, 4)
    contacts = {c["external_ids"]["crm"]: c for c in (await api.get("/v1/contacts")).json()["data"]}
    assert contacts["k1"]["first_name"] == "Multi\nline"
    assert (contacts["k2"]["first_name"], contacts["k2"]["title"]) == ("Zoë", 'Chief, "quoted"')


async def test_a_cancelled_import_writes_nothing_more_and_an_ended_one_cannot_be_cancelled(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    r = await api.post(
        "/v1/imports", json={"object_type": "contacts", "format": "csv", "file": "email\na@x.com\n"}
    )
    job_id = r.json()["id"]
    r = await api.post(f"/v1/imports/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    await drain(pool)
    assert (await api.get(f"/v1/imports/{job_id}")).json()["rows_done"] == 0
    assert (await api.get("/v1/contacts")).json()["data"] == []
    assert (await api.post(f"/v1/imports/{job_id}/cancel")).status_code == 409

    done = await run_import(api, pool, object_type="contacts", format="csv", file="email\nb@x.com\n")
    assert (await api.post(f"/v1/imports/{done['id']}/cancel")).status_code == 409


async def test_a_file_without_a_header_fails_the_job(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    job = await run_import(api, pool, object_type="contacts", format="csv", file="\n\n")
    assert job["status"] == "failed" and "header" in job["error"]


@pytest.mark.parametrize(
    ("body", "status", "path"),
    [
        ({"mapping": {"a": "nonsense"}}, 422, "/mapping/a"),
        ({"mapping": {"a": "company.name"}}, 422, "/mapping/a"),
        ({"mapping": {"a": "custom_fields"}}, 422, "/mapping/a"),
        ({"upsert_key": "first_name"}, 422, "/upsert_key"),
        ({"format": "xlsx"}, 422, "/format"),
    ],
)
async def test_an_import_that_cannot_run_is_refused_naming_the_field(
    api: httpx.AsyncClient, body: dict[str, Any], status: int, path: str
) -> None:
    r = await api.post("/v1/imports", json={"object_type": "contacts", "format": "csv", **body})
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert path in [e["path"] for e in r.json()["errors"]]


async def test_an_import_needs_the_scope_to_write_its_objects(make_client: Any) -> None:
    client = await make_client(scopes=["imports:write", "imports:read", "companies:write"])
    r = await client.post("/v1/imports", json={"object_type": "contacts", "format": "csv", "file": "email\n"})
    assert r.status_code == 403 and "contacts:write" in r.json()["detail"]
    r = await client.post("/v1/imports", json={"object_type": "companies", "format": "csv", "file": "name\n"})
    assert r.status_code == 202
    other = await make_client()
    assert (await other.get(f"/v1/imports/{r.json()['id']}")).status_code == 404


async def test_deals_and_tickets_find_their_contact_and_company_by_natural_key(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    contact = (await api.post("/v1/contacts", json={"email": "buyer@x.com"})).json()["id"]
    company = (await api.post("/v1/companies", json={"name": "Buyer", "domain": "buyer.com"})).json()["id"]
    csv = (
        "order,name,amount,currency,contact.email,company.domain\n"
        "o1,First deal,1250.50,EUR,BUYER@x.com,buyer.com\n"
        "o2,Second deal,12.5,,buyer@x.com,\n"
    )
    mapping = {"order": "external_ids.shop"}
    body = {"object_type": "deals", "format": "csv", "mapping": mapping, "upsert_key": "external_ids.shop"}
    job = await run_import(api, pool, **body, file=csv)
    assert (job["created"], job["failed"]) == (1, 1)
    assert await errors_of(api, job) == [(2, "currency", "validation_error")]
    deal = (await api.get("/v1/deals")).json()["data"][0]
    assert (deal["contact_id"], deal["company_id"], deal["amount"]) == (contact, company, "1250.50")
    assert deal["external_ids"] == {"shop": "o1"}
    assert await events(pool, api, "deal.created") == 1

    again = await run_import(api, pool, **body, file=csv.replace("First deal", "Renamed deal"))
    assert (again["created"], again["updated"]) == (0, 1)

    tickets = (
        '{"subject": "Help", "priority": "high", "requester.email": "buyer@x.com"}\n'
        '{"subject": "Hm", "priority": "whenever"}\n'
    )
    job = await run_import(api, pool, object_type="tickets", format="ndjson", file=tickets)
    assert (job["created"], job["failed"]) == (1, 1)
    assert await errors_of(api, job) == [(2, "priority", "validation_error")]
    ticket = (await api.get("/v1/tickets")).json()["data"][0]
    assert (ticket["requester_id"], ticket["company_id"]) == (contact, None)


async def test_a_row_whose_owner_is_no_active_member_fails_alone(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    owner = (await api.post("/v1/members", json={"email": "o@example.com", "name": "O"})).json()["id"]
    lines = [
        f'{{"email": "a@example.com", "owner_id": "{owner}"}}',
        '{"email": "b@example.com", "owner_id": "0193a0c0-0000-7000-8000-000000000001"}',
        '{"email": "c@example.com"}',
    ]
    body = {"object_type": "contacts", "format": "ndjson", "upsert_key": "email", "file": "\n".join(lines)}
    job = await run_import(api, pool, **body)
    assert (job["created"], job["failed"]) == (2, 1)
    assert await errors_of(api, job) == [(2, "owner_id", "validation_error")]
    stored = (await api.get("/v1/contacts", params={"owner_id": owner})).json()["data"]
    assert [c["email"] for c in stored] == ["a@example.com"]
