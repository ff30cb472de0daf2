"""Keys, scopes and the workspace wall: another workspace's objects are 404 on every route."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
from clients import MakeClient
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from crm_api.admin.keys import check_scopes
from crm_api.app import create_app
from crm_api.auth import valid_scope
from crm_api.merge.router import MOVES
from crm_api.registry import SCOPE_RESOURCES

# Every scope keys have been issued with: each must stay valid (stored keys hold them).
ISSUED_SCOPES = {
    "*",
    "admin",
    *(
        f"{resource}:{action}"
        for resource in (
            "contacts",
            "companies",
            "events",
            "webhooks",
            "pipelines",
            "deals",
            "activities",
            "tickets",
            "sla_policies",
            "orders",
            "custom_fields",
            "reports",
            "search",
            "imports",
            "exports",
            "browser_tokens",
            "members",
            "teams",
            "segments",
            "scoring_rules",
            "automations",
        )
        for action in ("read", "write")
    ),
}


def _scopes(dependant: Dependant) -> Iterator[str]:
    for sub in dependant.dependencies:
        scope = getattr(sub.call, "scope", None)
        if scope is not None:
            yield scope
        yield from _scopes(sub)


def _routes(routes: Any) -> list[APIRoute]:
    return [c.original_route for c in iter_route_contexts(routes) if isinstance(c.original_route, APIRoute)]


async def test_missing_and_unknown_keys_are_401(api: httpx.AsyncClient) -> None:
    anonymous = await api.get("/v1/contacts", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    wrong = await api.get("/v1/contacts", headers={"Authorization": "Bearer crm_nope_nope"})
    assert wrong.status_code == 401


async def test_scopes_are_enforced(make_client: MakeClient) -> None:
    reader = await make_client(scopes=["contacts:read"])
    assert (await reader.get("/v1/contacts")).status_code == 200
    assert (await reader.post("/v1/contacts", json={})).status_code == 403
    assert (await reader.get("/v1/companies")).status_code == 403
    assert (await reader.get("/v1/api-keys")).status_code == 403
    star = await make_client(scopes=["*"])
    assert (await star.post("/v1/companies", json={"name": "x"})).status_code == 201
    assert (await star.get("/v1/api-keys")).status_code == 403  # admin is separate from *


async def test_api_keys_admin_endpoints(api: httpx.AsyncClient) -> None:
    created = await api.post("/v1/api-keys", json={"name": "zap", "scopes": ["contacts:read"]})
    assert created.status_code == 201
    body = created.json()
    key = body["key"]
    assert key.startswith("crm_") and body["scopes"] == ["contacts:read"]
    listed = (await api.get("/v1/api-keys")).json()["data"]
    assert body["id"] in [k["id"] for k in listed]
    assert all("key" not in k and "key_hash" not in k for k in listed)
    bad = await api.post("/v1/api-keys", json={"name": "x", "scopes": ["contacts:fly"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "/scopes/0"
    headers = {"Authorization": f"Bearer {key}"}
    assert (await api.get("/v1/contacts", headers=headers)).status_code == 200
    revoked = await api.delete(f"/v1/api-keys/{body['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert (await api.get("/v1/contacts", headers=headers)).status_code == 401
    again = await api.delete(f"/v1/api-keys/{body['id']}")  # revoking twice keeps the first time
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]


async def test_other_workspaces_objects_are_404_everywhere(make_client: MakeClient) -> None:
    a = await make_client()
    b = await make_client()
    company = (await a.post("/v1/companies", json={"name": "A", "domain": "a.com"})).json()
    contact = (
        await a.post(
            "/v1/contacts", json={"email": "a@a.com", "company_id": company["id"], "external_ids": {"s": "1"}}
        )
    ).json()
    hook = (await a.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h", "event_types": ["*"]})).json()
    # the feed shows an event once every older transaction on the server has ended: wait for it
    for _ in range(400):
        feed = (await a.get("/v1/events")).json()["data"]
        if feed:
            break
        await asyncio.sleep(0.05)
    event = feed[0]
    cid, coid = contact["id"], company["id"]
    calls = [
        b.get(f"/v1/contacts/{cid}"),
        b.patch(f"/v1/contacts/{cid}", json={"title": "x"}),
        b.delete(f"/v1/contacts/{cid}"),
        b.post(f"/v1/contacts/{cid}/restore"),
        b.get(f"/v1/companies/{coid}"),
        b.patch(f"/v1/companies/{coid}", json={"name": "x"}),
        b.delete(f"/v1/companies/{coid}"),
        b.post(f"/v1/companies/{coid}/restore"),
        b.get(f"/v1/companies/{coid}/contacts"),
        b.get(f"/v1/webhooks/{hook['id']}"),
        b.patch(f"/v1/webhooks/{hook['id']}", json={"description": "x"}),
        b.delete(f"/v1/webhooks/{hook['id']}"),
        b.post(f"/v1/webhooks/{hook['id']}/rotate-secret"),
        b.post(f"/v1/webhooks/{hook['id']}/test"),
        b.get(f"/v1/webhooks/{hook['id']}/deliveries"),
        b.get(f"/v1/events/{event['id']}"),
    ]
    for call in calls:
        r = await call
        assert r.status_code == 404, (r.request.method, r.request.url, r.status_code)
    # a company of another workspace cannot be linked, and natural keys do not leak across
    linked = await b.post("/v1/contacts", json={"company_id": coid})
    assert linked.status_code == 422
    assert (
        await b.post("/v1/contacts", json={"email": "a@a.com", "external_ids": {"s": "1"}})
    ).status_code == 201
    assert (await b.put("/v1/companies/by-domain/a.com", json={"name": "B's"})).status_code == 201
    assert (await b.post("/v1/contacts/search", json={})).json()["data"][0]["id"] != cid
    assert [c["id"] for c in (await b.get("/v1/contacts")).json()["data"]] != [cid]
    # and nothing of A's changed
    assert (await a.get(f"/v1/contacts/{cid}")).json()["version"] == 1


def test_every_route_requires_one_known_scope_and_every_scope_guards_a_route() -> None:
    app = create_app(url="postgresql://unused")
    used: set[str] = set()
    routes = [r for r in _routes(app.routes) if r.include_in_schema]  # not /health
    public = {"/livez", "/readyz"}  # probes: what they tell needs no key (and /metrics is not in the spec)
    assert {r.path for r in routes} >= public
    for route in routes:
        if route.path in public:
            assert not list(_scopes(route.dependant)), route.path
            continue
        scopes = list(_scopes(route.dependant))
        assert len(scopes) == 1, (route.path, route.methods, scopes)
        assert valid_scope(scopes[0], SCOPE_RESOURCES), (route.path, scopes)
        used.add(scopes[0])
    assert len(routes) == sum(len(op) for op in app.openapi()["paths"].values())
    assert all(valid_scope(s, SCOPE_RESOURCES) for moves in MOVES.values() for s in moves)
    # no scope that guards nothing, none missing: the resources served are the resources scoped
    assert {s.partition(":")[0] for s in used} - {"admin"} == set(SCOPE_RESOURCES)


def test_scopes_derive_from_the_served_resources_and_keep_every_issued_one() -> None:
    """A resource dropped from (or renamed in) the registry would invalidate keys already issued."""
    assert len(set(SCOPE_RESOURCES)) == len(SCOPE_RESOURCES)
    known = {"*", "admin", *(f"{r}:{a}" for r in SCOPE_RESOURCES for a in ("read", "write"))}
    assert known == ISSUED_SCOPES
    assert check_scopes(sorted(ISSUED_SCOPES)) == sorted(ISSUED_SCOPES)
    for bad in ("contacts:fly", "contact:read", "widgets:read", "contacts", ""):
        assert not valid_scope(bad, SCOPE_RESOURCES), bad
