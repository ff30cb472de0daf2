"""What every route shares: a write honours Idempotency-Key through ``@idempotent``; a read runs on
``deps.read_pool``."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from crm_api.app import create_app
from crm_api.idempotency import idempotent

# POSTs that only read: they take no Idempotency-Key
READS = ("/search", "/duplicates", "/aggregate")


def _routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI keeps included routers whole
        if included is not None:
            yield from _routes(included.routes)
        elif isinstance(route, APIRoute):
            yield route


async def _probe(request: Any, principal: Any, conn: Any) -> Any: ...


def test_every_write_route_is_idempotent() -> None:
    wrapped = idempotent(_probe).__code__  # every wrapper runs this code object
    writes = [
        r
        for r in _routes(create_app(url="postgresql://unused").routes)
        if r.methods - {"GET", "HEAD"} and not r.path.endswith(READS)
    ]
    assert len(writes) > 50
    missing = [(sorted(r.methods), r.path) for r in writes if r.endpoint.__code__ is not wrapped]
    assert not missing, f"write routes without @idempotent: {missing}"


def _codes(dependant: Any) -> Iterator[Any]:
    """The code of the endpoint and of each of its dependencies, depth first."""
    code = getattr(dependant.call, "__code__", None)
    if code is not None:
        yield code
    for inner in dependant.dependencies:
        yield from _codes(inner)


# reads that touch no database: the event catalogue is built from code, once per app
NO_DATABASE = ("/v1/event-types",)


def test_every_read_route_takes_the_read_connection() -> None:
    reads = [
        r
        for r in _routes(create_app(url="postgresql://unused").routes)
        if r.path.startswith("/v1/")
        and (r.methods <= {"GET", "HEAD"} or r.path.endswith(READS))
        and r.path not in NO_DATABASE
    ]
    assert len(reads) > 30
    missing = [
        (sorted(r.methods), r.path)
        for r in reads
        # the endpoint's own code calls it, or a dependency's does (the reports' shared one); a nested
        # function's code would not count
        if not any("read_pool" in code.co_names for code in _codes(r.dependant))
    ]
    assert not missing, f"read routes without read_pool: {missing}"


def test_a_route_without_the_arguments_it_needs_is_refused_at_definition() -> None:
    async def route(request: Any, body: Any) -> Any: ...

    try:
        idempotent(route)
    except TypeError as exc:
        assert "conn, principal" in str(exc)
    else:
        raise AssertionError("@idempotent accepted a route with no conn or principal")


async def test_replay_mismatch_and_a_failed_write_on_a_plain_write_route(api: httpx.AsyncClient) -> None:
    """PATCH runs on WriteConn: a transaction only when a key is sent, so its record commits with it."""
    contact = (await api.post("/v1/contacts", json={"email": "idem@example.com"})).json()
    key = {"Idempotency-Key": f"patch-{uuid.uuid4()}"}
    first = await api.patch(f"/v1/contacts/{contact['id']}", json={"first_name": "Ada"}, headers=key)
    again = await api.patch(f"/v1/contacts/{contact['id']}", json={"first_name": "Ada"}, headers=key)
    assert first.status_code == again.status_code == 200
    assert "idempotent-replayed" not in first.headers and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() and again.headers["etag"] == first.headers["etag"] == '"2"'
    other = await api.patch(f"/v1/contacts/{contact['id']}", json={"first_name": "Bob"}, headers=key)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    now = await api.get(f"/v1/contacts/{contact['id']}")
    assert now.json()["first_name"] == "Ada" and now.json()["version"] == 2

    # a write that fails records nothing: the key is free for the next request
    failed = {"Idempotency-Key": f"failed-{uuid.uuid4()}"}
    missing = await api.patch(f"/v1/contacts/{uuid.uuid4()}", json={"first_name": "X"}, headers=failed)
    assert missing.status_code == 404
    created = await api.post("/v1/contacts", json={"email": "after@example.com"}, headers=failed)
    assert created.status_code == 201 and "idempotent-replayed" not in created.headers


async def test_a_merge_checks_the_moved_scopes_before_replaying(make_client: Any) -> None:
    """The scopes a merge needs beyond its own are checked before the key is looked up, so a key lacking
    them cannot read another key's merge result by replaying its Idempotency-Key."""
    workspace = f"merge-{uuid.uuid4().hex}"
    full = await make_client(workspace=workspace)
    narrow = await make_client(scopes=["companies:read", "companies:write"], workspace=workspace)
    a = (await full.post("/v1/companies", json={"name": "A"})).json()
    b = (await full.post("/v1/companies", json={"name": "B"})).json()
    key = {"Idempotency-Key": f"merge-{uuid.uuid4()}"}
    body = {"from": [b["id"]]}
    assert (await full.post(f"/v1/companies/{a['id']}/merge", json=body, headers=key)).status_code == 200
    replay = await full.post(f"/v1/companies/{a['id']}/merge", json=body, headers=key)
    assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
    refused = await narrow.post(f"/v1/companies/{a['id']}/merge", json=body, headers=key)
    assert refused.status_code == 403 and "deals:write" in refused.json()["detail"]


def _resolve(router: Any, path: str, method: str) -> tuple[str, Any]:
    """Which of the app's top-level routes takes the request, as Starlette's loop decides it."""
    from starlette.routing import Match

    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "router": router}
    partial = None
    for index, route in enumerate(router.routes):
        match, _ = route.matches(dict(scope))
        if match is Match.FULL:
            return "full", index
        if match is Match.PARTIAL and partial is None:
            partial = index
    return ("partial", partial) if partial is not None else ("none", None)


def test_the_included_routers_guard_changes_no_routing_decision() -> None:
    """``routing.guard_included`` lets a router decline a path none of its routes match; every route's own
    path (and its neighbours: other methods, a trailing slash, a path one segment longer) must still reach
    the same route, or none, as FastAPI alone decides."""
    from fastapi.routing import iter_route_contexts

    guarded = create_app(url="postgresql://unused")
    plain = create_app(url="postgresql://unused")
    for route in plain.router.routes:  # undo the guard: the instance attribute hides the class's method
        route.__dict__.pop("matches", None)
    assert any("matches" in r.__dict__ for r in guarded.router.routes)
    paths = set()
    for context in iter_route_contexts(plain.router.routes):
        fmt = getattr(context, "path_format", None)
        if fmt:
            concrete = fmt.replace("{path}", "a/b")
            for name in ("id", "object_type", "key", "field", "report", "resource", "token"):
                concrete = concrete.replace("{" + name + "}", str(uuid.uuid4()))
            while "{" in concrete:
                start, end = concrete.index("{"), concrete.index("}")
                concrete = concrete[:start] + "x1" + concrete[end + 1 :]
            paths |= {concrete, concrete + "/", concrete + "/more", concrete.rstrip("/") or "/"}
    paths |= {"/", "/v1", "/v1/", "/v1/nothing", "/nothing/at/all"}
    assert len(paths) > 200
    for path in sorted(paths):
        for method in ("GET", "POST", "PATCH", "DELETE", "PUT"):
            assert _resolve(guarded.router, path, method) == _resolve(plain.router, path, method), (
                method,
                path,
            )
