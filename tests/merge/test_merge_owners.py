"""A merge carries owners over as they are: an owner who is a deactivated member comes with the record
it owned (the survivor's fill or ``prefer``), while a client choosing that member is still refused."""

from __future__ import annotations

from typing import Any

import httpx


async def _post(api: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post(url, json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def _member(api: httpx.AsyncClient, email: str) -> dict[str, Any]:
    member = await _post(api, "/v1/members", {"email": email, "name": email.split("@")[0]})
    return member


async def test_a_merge_fills_the_survivor_with_a_deactivated_owner(api: httpx.AsyncClient) -> None:
    gone = await _member(api, "gone@example.com")
    keep = await _post(api, "/v1/contacts", {"first_name": "Keep"})
    dup = await _post(api, "/v1/contacts", {"email": "dup@x.com", "owner_id": gone["id"]})
    r = await api.patch(f"/v1/members/{gone['id']}", json={"active": False})
    assert r.status_code == 200, r.text
    r = await api.post(f"/v1/contacts/{keep['id']}/merge", json={"from": [dup["id"]]})
    assert r.status_code == 200, r.text
    survivor = (await api.get(f"/v1/contacts/{keep['id']}")).json()
    assert (survivor["owner_id"], survivor["email"]) == (gone["id"], "dup@x.com")
    # a client naming the deactivated member is judged, and refused
    other = await _post(api, "/v1/contacts", {"first_name": "Other"})
    r = await api.patch(f"/v1/contacts/{other['id']}", json={"owner_id": gone["id"]})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/owner_id", r.text


async def test_prefer_takes_a_deactivated_owner_over_an_active_one(api: httpx.AsyncClient) -> None:
    active = await _post(api, "/v1/members", {"email": "on@example.com", "name": "On"})
    gone = await _member(api, "off@example.com")
    keep = await _post(api, "/v1/companies", {"name": "Keep", "owner_id": active["id"]})
    dup = await _post(api, "/v1/companies", {"name": "Dup", "owner_id": gone["id"]})
    await api.patch(f"/v1/members/{gone['id']}", json={"active": False})
    r = await api.post(
        f"/v1/companies/{keep['id']}/merge",
        json={"from": [dup["id"]], "prefer": {"owner_id": dup["id"]}},
    )
    assert r.status_code == 200, r.text
    assert (await api.get(f"/v1/companies/{keep['id']}")).json()["owner_id"] == gone["id"]
