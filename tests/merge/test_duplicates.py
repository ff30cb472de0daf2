"""The duplicate finder: each criterion, its reasons and scores, inputs by id or payload."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from crm_api import sql
from crm_api.merge import duplicates
from crm_api.models import crm


async def _post(api: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post(url, json=body)
    assert r.status_code in (200, 201), r.text
    out: dict[str, Any] = r.json()
    return out


def _by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in result["matches"]}


async def test_contact_duplicates_by_each_criterion(api: httpx.AsyncClient) -> None:
    co = await _post(api, "/v1/companies", {"name": "Acme"})
    email = await _post(api, "/v1/contacts", {"email": "jo@x.com", "first_name": "Zed"})
    phone = await _post(api, "/v1/contacts", {"phone": "+1 (555) 010-9999", "first_name": "Quinn"})
    at_co = await _post(
        api, "/v1/contacts", {"first_name": "Maria", "last_name": "Garcia", "company_id": co["id"]}
    )
    fuzzy = await _post(api, "/v1/contacts", {"first_name": "Jonathan", "last_name": "Smithe"})
    archived = await _post(api, "/v1/contacts", {"email": "old@x.com"})
    await api.delete(f"/v1/contacts/{archived['id']}")

    out = await _post(
        api,
        "/v1/contacts/duplicates",
        {
            "records": [
                {"email": " JO@X.com "},
                {"phone": "1.555.010.9999"},
                {"first_name": "maria", "last_name": "GARCIA", "company_id": co["id"]},
                {"first_name": "Jonathan", "last_name": "Smith"},
                {"email": "old@x.com"},
                {"first_name": "Nobody", "last_name": "Atall", "phone": "12"},
            ]
        },
    )
    assert out["object"] == "duplicates"
    data = out["data"]
    assert [d["input"] for d in data] == [f"/records/{n}" for n in range(6)]
    m = _by_id(data[0])[email["id"]]
    assert m["reasons"] == ["email"] and m["score"] == 1.0 and m["object"]["email"] == "jo@x.com"
    assert _by_id(data[1])[phone["id"]]["reasons"] == ["phone"]
    m = _by_id(data[2])[at_co["id"]]
    assert m["reasons"][0] == "name_at_company" and m["score"] == 0.85
    assert "fuzzy_name" in m["reasons"]  # same name is also a perfect fuzzy match
    m = _by_id(data[3])[fuzzy["id"]]
    assert m["reasons"] == ["fuzzy_name"] and 0.6 <= m["similarity"] < 1 and m["score"] < 0.8
    assert data[4]["matches"] == []  # archived records are not candidates
    assert data[5]["matches"] == []


async def test_duplicates_of_existing_ids_exclude_the_record_itself(api: httpx.AsyncClient) -> None:
    a = await _post(api, "/v1/contacts", {"first_name": "Grace", "last_name": "Hopper"})
    b = await _post(api, "/v1/contacts", {"first_name": "Grace", "last_name": "Hoper"})
    out = await _post(api, "/v1/contacts/duplicates", {"ids": [a["id"]], "threshold": 0.5})
    assert out["data"][0]["id"] == a["id"] and out["data"][0]["input"] == "/ids/0"
    assert [m["id"] for m in out["data"][0]["matches"]] == [b["id"]]
    # the threshold is the caller's
    out = await _post(api, "/v1/contacts/duplicates", {"ids": [a["id"]], "threshold": 0.99})
    assert out["data"][0]["matches"] == []


async def test_company_duplicates_by_domain_and_fuzzy_name(api: httpx.AsyncClient) -> None:
    dom = await _post(api, "/v1/companies", {"name": "Initech", "domain": "initech.com"})
    fuzzy = await _post(api, "/v1/companies", {"name": "Globex Corporation"})
    out = await _post(
        api,
        "/v1/companies/duplicates",
        {"records": [{"domain": "https://www.INITECH.com/about"}, {"name": "Globex Corp"}], "threshold": 0.4},
    )
    assert _by_id(out["data"][0])[dom["id"]]["reasons"] == ["domain"]
    assert _by_id(out["data"][1])[fuzzy["id"]]["reasons"] == ["fuzzy_name"]


async def test_duplicates_problems(api: httpx.AsyncClient, make_client: Any) -> None:
    async def problem(url: str, body: dict[str, Any], status: int, path: str) -> None:
        r = await api.post(url, json=body)
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert path in [e["path"] for e in r.json()["errors"]], r.json()

    await problem("/v1/contacts/duplicates", {}, 422, "/ids")
    await problem("/v1/contacts/duplicates", {"ids": [str(uuid.uuid4())]}, 404, "/ids/0")
    await problem("/v1/contacts/duplicates", {"records": [{"emial": "x"}]}, 422, "/records/0/emial")
    await problem("/v1/contacts/duplicates", {"ids": [], "threshold": 0.1}, 422, "/threshold")
    await problem(
        "/v1/companies/duplicates", {"records": [{"domain": "not a domain"}]}, 422, "/records/0/domain"
    )
    foreign = await _post(await make_client(), "/v1/contacts", {"first_name": "F"})
    await problem("/v1/contacts/duplicates", {"ids": [foreign["id"]]}, 404, "/ids/0")


def _explainable(condition: Any) -> str:
    """``SELECT c.id FROM contacts AS c WHERE <condition>``, compiled as the finder's statements are."""
    c = sql.table("contacts").alias("c")
    return "EXPLAIN " + sql.Compiled(select(c.c.id).where(condition(c))).text


async def test_duplicate_finder_uses_the_trigram_and_phone_indexes(api: httpx.AsyncClient, pool: Any) -> None:
    """The fuzzy and phone criteria must be index scans, not table scans (planner forced off seqscans). The
    expressions come from the functions the finder and the models' index declarations both use, so this
    also checks that the migration built the indexes on the same expressions."""
    name_key = _explainable(
        # no workspace condition: only the trigram index can answer this without a table scan
        lambda c: crm.contact_name_key(c.c.first_name, c.c.last_name).op("%")(sql.const("ada l"))
    )
    digits = _explainable(
        lambda c: (c.c.workspace_id == sql.param("ws")) & (crm.phone_digits(c.c.phone) == "15550109999")
    )
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(name_key))
        assert "ix_contacts_name_trgm" in plan, plan
        plan = "\n".join(r[0] for r in await conn.fetch(digits, uuid.uuid4()))
        assert "ix_contacts_phone_digits" in plan, plan
        assert any("Index Cond" in line and "regexp_replace" in line for line in plan.splitlines()), plan
    # and those are the expressions the finder's statements hold
    assert "lower((coalesce(c.first_name, '') || ' ') || coalesce(c.last_name, '')) % q.name" in (
        duplicates._FUZZY_CONTACTS.compiled.text
    )
    assert "regexp_replace(c.phone, '[^0-9]', '', 'g') = q.phone" in duplicates._PHONE.compiled.text
