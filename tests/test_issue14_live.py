"""Issue 14 end to end against ``crm-api serve`` over real HTTP (the other tests of its items run mostly in
process): related objects and sparse fields, ``If-None-Match``, a browser token under CORS and on the
stream, the schema of an object with the workspace's custom fields, search across objects, and the
recipes' find or create and polling trigger. Each step is one a front-end or an integration platform makes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from live_server import Server, new_key, serve

APP = "https://app.example.com"


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[Server]:
    key = new_key(database_url)
    with serve(database_url, key=key, settings={"CRM_CORS_ORIGINS": APP}) as running:
        yield running


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _pointer(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return str(response.json()["errors"][0]["path"])


def test_related_objects_sparse_fields_and_not_modified(api: httpx.Client) -> None:
    acme = _ok(api.post("/v1/companies", json={"name": "Acme Live", "domain": "acmelive.com"}), 201)
    ann = _ok(api.post("/v1/contacts", json={"email": "ann@acmelive.com", "company_id": acme["id"]}), 201)

    got = _ok(api.get(f"/v1/contacts/{ann['id']}", params={"include": "company", "fields": "email"}))
    assert set(got) == {"id", "object", "email", "company"} and got["company"]["domain"] == "acmelive.com"
    listed = _ok(api.get("/v1/contacts", params={"include": "company"}))["data"]
    assert next(c for c in listed if c["id"] == ann["id"])["company"]["id"] == acme["id"]
    found = _ok(
        api.post(
            "/v1/contacts/search",
            params={"include": "company"},
            json={"filter": {"field": "email", "op": "eq", "value": "ann@acmelive.com"}},
        )
    )
    assert [c["company"]["name"] for c in found["data"]] == ["Acme Live"]
    company = _ok(api.get(f"/v1/companies/{acme['id']}", params={"include": "contacts"}))
    assert company["contacts"] == {"data": [_ok(api.get(f"/v1/contacts/{ann['id']}"))], "has_more": False}
    assert _pointer(api.get("/v1/contacts", params={"include": "owner"})) == "/include"
    assert _pointer(api.post("/v1/contacts/search", params={"fields": "nope"}, json={})) == "/fields"

    # 304 over the wire: no body, the ETag, for a resource and for a pipeline
    pipeline = _ok(api.get("/v1/pipelines"))["data"][0]
    for path in (f"/v1/contacts/{ann['id']}", f"/v1/pipelines/{pipeline['id']}"):
        etag = api.get(path).headers["etag"]
        r = api.get(path, headers={"If-None-Match": etag})
        assert (r.status_code, r.headers["etag"], r.content) == (304, etag, b""), path
    _ok(api.patch(f"/v1/contacts/{ann['id']}", json={"first_name": "Ann"}))
    assert api.get(f"/v1/contacts/{ann['id']}", headers={"If-None-Match": '"1"'}).status_code == 200


def test_a_browser_token_under_cors_and_on_the_stream(server: Server, api: httpx.Client) -> None:
    wanted = {
        "scopes": ["contacts:read", "contacts:write", "events:read"],
        "origins": [APP],
        "ttl_seconds": 60,
    }
    token = _ok(api.post("/v1/browser-tokens", json=wanted))["token"]
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        preflight = browser.options(
            "/v1/contacts",
            headers={"Origin": APP, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"},
        )  # fmt: skip
        assert preflight.status_code in (200, 204), preflight.text
        assert preflight.headers["access-control-allow-origin"] == APP
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        as_page = {"Authorization": f"Bearer {token}", "Origin": APP}
        made = browser.post("/v1/contacts", json={"email": "page@live.example"}, headers=as_page)
        assert made.status_code == 201 and made.headers["access-control-allow-origin"] == APP
        assert browser.post("/v1/companies", json={"name": "X"}, headers=as_page).status_code == 403
        assert browser.get("/v1/api-keys", headers=as_page).status_code == 403
        assert browser.get("/v1/contacts", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        elsewhere = {"Authorization": f"Bearer {token}", "Origin": "https://evil.example.com"}
        assert browser.get("/v1/contacts", headers=elsewhere).status_code == 401
        # the stream takes it in the query, as EventSource sends it; no other route does
        assert (
            browser.get("/v1/contacts", params={"access_token": token}, headers={"Origin": APP}).status_code
            == 401
        )
        with browser.stream(
            "GET", "/v1/events/stream", params={"access_token": token}, headers={"Origin": APP}
        ) as stream:
            assert stream.status_code == 200 and stream.headers["content-type"].startswith(
                "text/event-stream"
            )
            assert stream.headers["access-control-allow-origin"] == APP
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:") and next(lines) == ": connected"


def test_the_schema_search_and_the_recipes(api: httpx.Client) -> None:
    options = [{"value": "free", "label": "Free"}, {"value": "pro", "label": "Pro"}]
    definition = {
        "object_type": "contact",
        "name": "plan_live",
        "label": "Plan",
        "type": "enum",
        "options": options,
    }
    _ok(api.post("/v1/custom-fields", json=definition), 201)
    schema = _ok(api.get("/v1/schemas/contact"))
    assert schema["properties"]["custom_fields"]["properties"]["plan_live"]["oneOf"][1] == {
        "const": "pro",
        "title": "Pro",
    }

    # find or create, twice: one record
    first = api.put(
        "/v1/contacts/by-email/Zoe.Ærø@Live.example", json={"first_name": "Zoë", "last_name": "Ærø"}
    )
    again = api.put("/v1/contacts/by-email/zoe.ærø@live.example", json={})
    assert (first.status_code, again.status_code) == (201, 200) and first.json()["id"] == again.json()["id"]
    # found by the next search, folded
    hits = _ok(api.get("/v1/search", params={"q": "zoe aero", "types": "contact", "include": "object"}))[
        "data"
    ]
    assert hits[0]["id"] == first.json()["id"] and hits[0]["data"]["first_name"] == "Zoë"
    assert [c["id"] for c in _ok(api.get("/v1/contacts", params={"q": "ZOË"}))["data"]] == [
        first.json()["id"]
    ]

    # a polling trigger for updates: the record once per version
    params = {"sort": "-updated_at", "fields": "version", "limit": "50"}
    seen = {(c["id"], c["version"]) for c in _ok(api.get("/v1/contacts", params=params))["data"]}
    _ok(api.patch(f"/v1/contacts/{first.json()['id']}", json={"custom_fields": {"plan_live": "pro"}}))
    fresh = {(c["id"], c["version"]) for c in _ok(api.get("/v1/contacts", params=params))["data"]} - seen
    assert fresh == {(first.json()["id"], 2)}
