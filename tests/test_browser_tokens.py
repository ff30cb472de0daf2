"""Browser tokens: minted by a key with some of its scopes, for some origins, for at most an hour; refused
from another origin, once expired, once their key is revoked, and for key and token management."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx

APP = "https://app.example.com"
MINTER = ["contacts:read", "contacts:write", "events:read", "browser_tokens:write"]


async def _token(api: httpx.AsyncClient, **body: Any) -> str:
    r = await api.post("/v1/browser-tokens", json={"scopes": ["contacts:read"], "origins": [APP], **body})
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


def _as(token: str, origin: str | None = APP) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if origin is not None:
        headers["Origin"] = origin
    return headers


async def test_a_token_reads_and_writes_within_its_scopes_from_its_origins(make_client: Any) -> None:
    server = await make_client(scopes=MINTER)
    r = await server.post(
        "/v1/browser-tokens",
        json={"scopes": ["contacts:read", "contacts:write"], "origins": [APP, "http://localhost:3000"],
              "ttl_seconds": 120},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    minted = r.json()
    assert minted["token"].startswith("crmbt_") and minted["scopes"] == ["contacts:read", "contacts:write"]
    token = minted["token"]
    created = await server.post("/v1/contacts", json={"email": "a@x.com"}, headers=_as(token))
    assert created.status_code == 201
    listed = await server.get("/v1/contacts", headers=_as(token, "http://localhost:3000"))
    assert [c["id"] for c in listed.json()["data"]] == [created.json()["id"]]
    # outside its scopes (the key has events:read, the token not)
    assert (await server.get("/v1/events", headers=_as(token))).status_code == 403
    assert (await server.post("/v1/companies", json={"name": "X"}, headers=_as(token))).status_code == 403
    # from no origin, or another one: refused as if unknown
    for origin in (None, "https://evil.example.com", "https://app.example.com:8443"):
        r = await server.get("/v1/contacts", headers=_as(token, origin))
        assert r.status_code == 401, origin
    # a token is not a query parameter, except to the stream
    r = await server.get("/v1/contacts", params={"access_token": token}, headers={"Authorization": ""})
    assert r.status_code == 401


async def test_what_a_token_may_not_carry_or_do(make_client: Any) -> None:
    admin = await make_client(scopes=["*", "admin"])
    for scopes, path in (
        (["admin"], "/scopes/0"),
        (["contacts:read", "browser_tokens:write"], "/scopes/1"),
        (["contacts:fly"], "/scopes/0"),
    ):
        r = await admin.post("/v1/browser-tokens", json={"scopes": scopes, "origins": [APP]})
        assert r.status_code == 422 and r.json()["errors"][0]["path"] == path, r.text
    narrow = await make_client(scopes=["contacts:read", "browser_tokens:write"])
    r = await narrow.post("/v1/browser-tokens", json={"scopes": ["deals:read"], "origins": [APP]})
    assert r.status_code == 422 and "lacks" in r.json()["errors"][0]["message"]
    for body in ({"ttl_seconds": 3601}, {"ttl_seconds": 0}, {"origins": ["app.example.com"]},
                 {"origins": ["https://app.example.com/path"]}, {"origins": []}):  # fmt: skip
        r = await admin.post(
            "/v1/browser-tokens", json={"scopes": ["contacts:read"], "origins": [APP], **body}
        )
        assert r.status_code == 422, body

    everything = await _token(admin, scopes=["*"])
    assert (await admin.get("/v1/deals", headers=_as(everything))).status_code == 200
    assert (await admin.get("/v1/api-keys", headers=_as(everything))).status_code == 403  # never admin
    r = await admin.post("/v1/browser-tokens", json={"scopes": ["contacts:read"], "origins": [APP]},
                         headers=_as(everything))  # fmt: skip
    assert r.status_code == 403 and "cannot mint" in r.json()["detail"]
    assert (await admin.get("/v1/contacts", headers=_as("crmbt_forged"))).status_code == 401


async def test_a_token_expires_and_dies_with_its_key(make_client: Any) -> None:
    admin = await make_client(scopes=["*", "admin"])
    short = await _token(admin, ttl_seconds=3)
    assert (await admin.get("/v1/contacts", headers=_as(short))).status_code == 200
    await asyncio.sleep(3.2)  # past its expiry
    assert (await admin.get("/v1/contacts", headers=_as(short))).status_code == 401

    made = (await admin.post("/v1/api-keys", json={"name": "team server", "scopes": MINTER})).json()
    team = await make_client(scopes=MINTER)  # a client to send the made key with
    team.headers["Authorization"] = f"Bearer {made['key']}"
    token = await _token(team)
    assert (await team.get("/v1/contacts", headers=_as(token))).status_code == 200
    assert (await admin.delete(f"/v1/api-keys/{made['id']}")).status_code == 200
    assert (await team.get("/v1/contacts", headers=_as(token))).status_code == 401


async def test_no_route_that_manages_keys_or_tokens_takes_a_token(make_client: Any) -> None:
    """Every route under /v1/api-keys and /v1/browser-tokens, walked from the spec, refuses a token that
    holds every scope a token may hold; its parent key passes the same check."""
    admin = await make_client(scopes=["*", "admin"])
    everything = await _token(admin, scopes=["*"])
    some_id = "01a2311e-4e09-77e3-ac82-95b36491e1de"
    paths = (await admin.get("/openapi.json")).json()["paths"]
    routes = [
        (method.upper(), path.replace("{id}", some_id))
        for path, item in paths.items()
        if path.startswith(("/v1/api-keys", "/v1/browser-tokens"))
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert {m for m, _ in routes} >= {"GET", "POST", "DELETE"} and len(routes) >= 4, routes
    bodies = {"/v1/api-keys": {"name": "k", "scopes": ["contacts:read"]},
              "/v1/browser-tokens": {"scopes": ["contacts:read"], "origins": [APP]}}  # fmt: skip
    for method, path in routes:
        body = bodies.get(path)
        r = await admin.request(method, path, json=body, headers=_as(everything))
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        r = await admin.request(method, path, json=body)  # the key itself: past the scope check
        assert r.status_code != 403, (method, path, r.text)


async def test_the_stream_alone_takes_a_token_in_the_query_and_checks_it_all(make_client: Any) -> None:
    """``access_token``: a browser token only (never an API key, which would end up in access logs), from
    its origins only, with ``events:read``; and nowhere but the stream (see the first test)."""
    key = await make_client(scopes=MINTER)
    no_auth = {"Authorization": ""}
    api_key = key.headers["Authorization"].removeprefix("Bearer ")
    r = await key.get("/v1/events/stream", params={"access_token": api_key}, headers=no_auth)
    assert r.status_code == 401 and "browser token" in r.json()["detail"]
    r = await key.get("/v1/events/stream", headers=no_auth)
    assert r.status_code == 401
    reader = await _token(key, scopes=["events:read"])
    for origin in (None, "https://evil.example.com"):
        headers = {**no_auth, **({"Origin": origin} if origin else {})}
        r = await key.get("/v1/events/stream", params={"access_token": reader}, headers=headers)
        assert r.status_code == 401, origin
    contacts_only = await _token(key)
    r = await key.get(
        "/v1/events/stream", params={"access_token": contacts_only}, headers={**no_auth, "Origin": APP}
    )
    assert r.status_code == 403 and "events:read" in r.json()["detail"]


async def test_a_token_lives_an_hour_at_most_and_never_past_its_key(make_client: Any) -> None:
    admin = await make_client(scopes=["*", "admin"])
    r = await admin.post(
        "/v1/browser-tokens", json={"scopes": ["contacts:read"], "origins": [APP], "ttl_seconds": 3600}
    )
    assert r.status_code == 200, r.text
    lasts = dt.datetime.fromisoformat(r.json()["expires_at"]) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=59) < lasts <= dt.timedelta(hours=1)
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat()
    made = await admin.post("/v1/api-keys", json={"name": "brief", "scopes": MINTER, "expires_at": soon})
    assert made.status_code == 201, made.text
    brief = await make_client(scopes=MINTER)
    brief.headers["Authorization"] = f"Bearer {made.json()['key']}"
    r = await brief.post(
        "/v1/browser-tokens", json={"scopes": ["contacts:read"], "origins": [APP], "ttl_seconds": 3600}
    )
    assert r.status_code == 200, r.text
    assert dt.datetime.fromisoformat(r.json()["expires_at"]) == dt.datetime.fromisoformat(soon)
