"""Timelines: one newest-first, keyset-paged stream per contact, company and deal, built from every kind."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from clients import MakeClient


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def _all(api: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every entry, walking the cursor."""
    entries: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):  # bounded: a cursor that does not advance must fail, not hang
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = await _ok(await api.get(path, params=query))
        entries += page["data"]
        if not page["has_more"]:
            return entries
        cursor = page["next_cursor"]
    raise AssertionError(f"still paging after 100 pages: {entries[-4:]}")


async def _story(api: httpx.AsyncClient) -> dict[str, Any]:
    """A contact at a company with one of everything the timeline shows."""
    company = await _ok(await api.post("/v1/companies", json={"name": "Acme", "domain": "acme.example.com"}))
    contact = await _ok(
        await api.post("/v1/contacts", json={"email": "ann@acme.example.com", "company_id": company["id"]})
    )
    await _ok(await api.patch(f"/v1/contacts/{contact['id']}", json={"title": "CTO"}))
    deal = await _ok(
        await api.post(
            "/v1/deals",
            json={"name": "Renewal", "contact_id": contact["id"], "company_id": company["id"]},
        )
    )
    pipeline = await _ok(await api.get(f"/v1/pipelines/{deal['pipeline_id']}"))
    won = next(s for s in pipeline["stages"] if s["kind"] == "won")
    await _ok(await api.patch(f"/v1/deals/{deal['id']}", json={"stage_id": won["id"]}))
    note = await _ok(
        await api.post(
            "/v1/activities",
            json={"type": "note", "subject": "Kick-off", "contact_ids": [contact["id"]],
                  "company_ids": [company["id"]], "deal_ids": [deal["id"]]},
        )
    )  # fmt: skip
    ticket = await _ok(
        await api.post("/v1/tickets", json={"subject": "Login", "requester_id": contact["id"]})
    )
    comment = await _ok(
        await api.post(f"/v1/tickets/{ticket['id']}/comments", json={"body": "Looking into it"})
    )
    return {
        "company": company,
        "contact": contact,
        "deal": deal,
        "won": won,
        "note": note,
        "ticket": ticket,
        "comment": comment,
    }


def _newest_first(entries: list[dict[str, Any]]) -> None:
    keys = [(dt.datetime.fromisoformat(e["at"]), e["id"]) for e in entries]
    assert keys == sorted(keys, reverse=True)


async def test_contact_timeline_has_every_kind_newest_first(api: httpx.AsyncClient) -> None:
    s = await _story(api)
    entries = await _all(api, f"/v1/contacts/{s['contact']['id']}/timeline")
    _newest_first(entries)
    kinds = [e["kind"] for e in entries]
    assert sorted(set(kinds)) == ["activity", "comment", "field_change", "stage_change", "ticket"]
    by_id = {e["id"]: e for e in entries}
    assert by_id[s["note"]["id"]]["data"]["subject"] == "Kick-off"
    assert by_id[s["ticket"]["id"]]["data"]["subject"] == "Login"
    assert by_id[s["comment"]["id"]]["data"]["body"] == "Looking into it"
    moves = [e["data"] for e in entries if e["kind"] == "stage_change"]
    # entering the first stage on create, then the move to won, newest first
    assert moves[0]["to_stage_id"] == s["won"]["id"]
    assert moves[0]["to_stage_name"] == s["won"]["name"] and moves[1]["from_stage_id"] is None
    assert len(moves) == 2
    changes = [e["data"] for e in entries if e["kind"] == "field_change"]
    titled = next(c for c in changes if c["type"] == "contact.updated")
    assert titled["previous"] == {"title": None} and titled["current"] == {"title": "CTO"}
    assert {c["type"] for c in changes} == {"contact.created", "contact.updated"}


async def test_pages_are_stable_and_cover_everything_once(api: httpx.AsyncClient) -> None:
    s = await _story(api)
    path = f"/v1/contacts/{s['contact']['id']}/timeline"
    whole = (await _ok(await api.get(path, params={"limit": 200})))["data"]
    paged = await _all(api, path, limit=2)
    assert [e["id"] for e in paged] == [e["id"] for e in whole]
    assert len(whole) == len({e["id"] for e in whole}) >= 7


async def test_kind_filter(api: httpx.AsyncClient) -> None:
    s = await _story(api)
    path = f"/v1/contacts/{s['contact']['id']}/timeline"
    only = await _all(api, path, kind="ticket,comment")
    assert sorted(e["kind"] for e in only) == ["comment", "ticket"]
    repeated = await _all(api, path, kind=["activity", "stage_change"])
    assert {e["kind"] for e in repeated} == {"activity", "stage_change"}
    bad = await api.get(path, params={"kind": "email"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "/kind"
    no_tickets_on_deals = await api.get(f"/v1/deals/{s['deal']['id']}/timeline", params={"kind": "ticket"})
    assert no_tickets_on_deals.status_code == 422


async def test_company_and_deal_timelines(api: httpx.AsyncClient) -> None:
    s = await _story(api)
    company = await _all(api, f"/v1/companies/{s['company']['id']}/timeline")
    _newest_first(company)
    # the ticket took its requester's company
    assert {"activity", "stage_change", "ticket", "comment", "field_change"} == {e["kind"] for e in company}
    assert all(e["data"]["type"].startswith("company.") for e in company if e["kind"] == "field_change")
    deal = await _all(api, f"/v1/deals/{s['deal']['id']}/timeline")
    _newest_first(deal)
    assert {e["kind"] for e in deal} == {"activity", "stage_change", "field_change"}
    types = {e["data"]["type"] for e in deal if e["kind"] == "field_change"}
    assert {"deal.created", "deal.updated", "deal.stage_changed", "deal.won"} <= types


async def test_archived_activities_leave_the_timeline(api: httpx.AsyncClient) -> None:
    s = await _story(api)
    await _ok(await api.delete(f"/v1/activities/{s['note']['id']}"))
    entries = await _all(api, f"/v1/contacts/{s['contact']['id']}/timeline", kind="activity")
    assert entries == []


async def test_errors_and_other_workspaces(api: httpx.AsyncClient, make_client: MakeClient) -> None:
    s = await _story(api)
    other = await make_client()
    for path in (
        f"/v1/contacts/{s['contact']['id']}/timeline",
        f"/v1/companies/{s['company']['id']}/timeline",
        f"/v1/deals/{s['deal']['id']}/timeline",
    ):
        r = await other.get(path)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    path = f"/v1/contacts/{s['contact']['id']}/timeline"
    assert (await api.get(path, params={"cursor": "not-a-cursor"})).status_code == 400
    assert (await api.get(path, params={"limit": 0})).status_code == 422
    narrow = await make_client(scopes=["deals:read"])
    assert (await narrow.get(path)).status_code == 403


async def test_blank_kind_is_422_not_an_empty_query(api: httpx.AsyncClient) -> None:
    company = await _ok(await api.post("/v1/companies", json={"name": "Blank"}))
    for kind in ("", ",", " , "):
        r = await api.get(f"/v1/companies/{company['id']}/timeline", params={"kind": kind})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["path"] == "/kind"
