"""The per-request path's shortcuts answer exactly as the long way round did.

Reads (a resource's get and list) are answered without FastAPI's request handler (``routing.Route.direct``);
each such answer is compared here, status, headers and body, with FastAPI's own answer to the same request
(the shortcut stands aside while a dependency override is set, as it does for FastAPI's telemetry). An
included router's route match is made once per request, and a list page's records are converted by
position (``spec.record_to_api``) into what ``spec.to_api`` makes of them by name.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import fastapi.routing
import httpx
import pytest
from clients import MakeClient

from crm_api import registry, routing
from crm_api.auth import authorize
from crm_api.resources.spec import REGISTRY

_VOLATILE = ("x-request-id", "ratelimit", "date")


def _seen(r: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [(k, v) for k, v in r.headers.multi_items() if k not in _VOLATILE]
    return r.status_code, headers, r.content.replace(r.headers.get("x-request-id", "-").encode(), b"RID")


class _Counted:
    """Counts FastAPI's request handler solving a route's dependencies."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        solve = fastapi.routing.solve_dependencies

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await solve(*args, **kwargs)

        monkeypatch.setattr(fastapi.routing, "solve_dependencies", counted)


async def test_reads_answer_as_fastapi_did(
    app: Any, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await make_client()
    reader = await make_client(scopes=["companies:read"])
    stranger = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    for n in range(3):
        r = await api.post("/v1/contacts", json={"email": f"p{n}-{uuid.uuid4().hex[:8]}@example.com"})
        assert r.status_code == 201, r.text
    created = r.json()
    oid = created["id"]
    first = (await api.get("/v1/contacts?limit=1")).json()
    asks: list[tuple[httpx.AsyncClient, str, dict[str, str]]] = [
        (api, f"/v1/contacts/{oid}", {}),
        (api, f"/v1/contacts/{oid.upper()}", {}),
        (api, f"/v1/contacts/{oid}", {"If-None-Match": '"1"'}),
        (api, f"/v1/contacts/{oid}", {"If-None-Match": 'W/"2", "7"'}),
        (api, f"/v1/contacts/{oid}?include=company", {}),
        (api, f"/v1/contacts/{oid}?fields=email", {}),
        (api, f"/v1/contacts/{oid.replace('-', '')}", {}),  # valid, not canonical: FastAPI's to validate
        (api, f"/v1/contacts/{{{oid}}}", {}),
        (api, "/v1/contacts/not-an-id", {}),
        (api, f"/v1/contacts/{uuid.uuid4()}", {}),
        (api, f"/v1/contacts/{oid}", {"X-Request-ID": "mine-1"}),
        (reader, f"/v1/contacts/{oid}", {}),  # 403
        (reader, "/v1/contacts", {}),
        (stranger, f"/v1/contacts/{oid}", {}),  # 401
        (stranger, "/v1/contacts/not-an-id", {}),  # 401 before the id is looked at, as before
        (stranger, "/v1/contacts", {"Authorization": "Bearer crm_nope_nope"}),
        (api, "/v1/contacts", {}),
        (api, "/v1/contacts?limit=2", {}),
        (api, f"/v1/contacts?limit=1&cursor={first['next_cursor']}", {}),
        (api, "/v1/contacts?limit=2&lifecycle_stage=lead", {}),
        (api, "/v1/contacts?limit=2&include=company", {}),
        (api, "/v1/contacts?limit=2&sort=-updated_at", {}),
        (api, "/v1/contacts?limit=0", {}),
        (api, "/v1/contacts?cursor=bad", {}),
        (api, "/v1/contacts?sort=nope", {}),
        (api, "/v1/companies?limit=2", {}),
        (api, f"/v1/deals/{oid}", {}),
    ]
    counted = _Counted(monkeypatch)
    short = [_seen(await client.get(path, headers=headers)) for client, path, headers in asks]
    # the canonical ids and the lists took the shortcut; the four other ids went FastAPI's way
    assert counted.calls == 4, counted.calls
    app.dependency_overrides[authorize] = authorize  # any override: FastAPI's handler for everything
    try:
        long = [_seen(await client.get(path, headers=headers)) for client, path, headers in asks]
    finally:
        del app.dependency_overrides[authorize]
    assert counted.calls == 4 + len(asks)
    for (_, path, _), a, b in zip(asks, short, long, strict=True):
        assert a == b, path
    assert short[0][0] == 200 and short[2][0] == 304 and short[11][0] == 403 and short[13][0] == 401
    await stranger.aclose()


async def test_a_route_is_matched_once_per_request(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    oid = (await api.post("/v1/contacts", json={"email": f"{uuid.uuid4().hex[:10]}@example.com"})).json()[
        "id"
    ]
    seen: list[str] = []
    matches = routing.Route.matches

    def counted(self: routing.Route, scope: Any) -> Any:
        seen.append(self.path)
        return matches(self, scope)

    monkeypatch.setattr(routing.Route, "matches", counted)
    for path in (f"/v1/contacts/{oid}", "/v1/contacts?limit=1"):
        seen.clear()
        assert (await api.get(path)).status_code == 200
        taken = path.split("?")[0].replace(oid, "{id}")
        assert seen.count(taken) == 1, seen
    # a path no route takes, and a method the path lacks, are answered as they were
    assert (await api.get("/v1/contacts/search")).status_code == 405
    assert (await api.get("/v1/nothing-here")).status_code == 404
    assert (await api.patch("/v1/contacts")).status_code == 405


@pytest.mark.parametrize("name", sorted(REGISTRY))
async def test_a_record_converts_by_position_as_by_name(name: str, database_url: str) -> None:
    list(registry.routers())  # every resource registered
    spec = REGISTRY[name]
    # a record of the spec's columns, each a value of its own, and something after them (a joined relation)
    values = ", ".join(f"'{n}:{c}'::text AS \"{c}\"" for n, c in enumerate(spec.columns))
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        record = await conn.fetchrow(f"SELECT {values}, 'more'::text AS joined_extra")
    finally:
        await conn.close()
    by_position = spec.record_to_api(record)
    assert by_position == spec.to_api(dict(record))
    assert list(by_position) == list(spec.to_api(dict(record)))  # the keys' order clients see
    assert "joined_extra" not in by_position


async def test_telemetry_is_looked_up_once_while_serving(app: Any) -> None:
    # within the (session) app's lifespan: the answer taken at start-up, not a look-up per request
    enabled = app._native_telemetry.enabled
    assert getattr(enabled, "__self__", None) is None, "still FastAPI's own look-up"
    assert enabled() is False
