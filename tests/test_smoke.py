from __future__ import annotations

import httpx


async def test_create_then_get_contact(api: httpx.AsyncClient) -> None:
    created = await api.post("/v1/contacts", json={"email": " Ann@Example.COM ", "first_name": "Ann"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["email"] == "ann@example.com"
    assert created.headers["location"] == f"/v1/contacts/{body['id']}"
    fetched = await api.get(f"/v1/contacts/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.headers["etag"] == '"1"'
    assert fetched.json() == body
