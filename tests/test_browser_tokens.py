"""Browser tokens: minted by a key with some of its scopes, for some origins, for at most an hour; refused
from another origin, once expired, once their key is revoked, and for key and token management."""

from __future__ import annotations

import asyncio
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
