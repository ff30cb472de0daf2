"""Contacts' acquisition ``source`` and ``source_detail`` (issue 15, attribution): settable through every
write path (create, PATCH, batch create and upsert, the upserts by email, external id and unique custom
field, orders one by one and in batches), read back as written, cleared with null, and filterable on the
list, in /search and in the aggregate; attribution counts each contact under the source it holds now."""

from __future__ import annotations

from typing import Any

import httpx


async def _one(api: httpx.AsyncClient, email: str) -> dict[str, Any]:
    found = (await api.get("/v1/contacts", params={"email": email})).json()["data"]
    assert len(found) == 1, (email, found)
    result: dict[str, Any] = found[0]
    return result


def _pair(contact: dict[str, Any]) -> tuple[Any, Any]:
    return contact["source"], contact["source_detail"]


def _order(email: str, source: str, detail: str) -> dict[str, Any]:
    return {
        "customer": {"email": email, "source": source, "source_detail": detail},
        "status": "paid",
        "currency": "USD",
        "totals": {"total": "5.00"},
        "updated_at": "2026-01-05T00:00:00Z",
    }


async def test_source_through_every_write_path(api: httpx.AsyncClient) -> None:
    made = await api.post(
        "/v1/contacts", json={"email": "c1@x.example", "source": "ads", "source_detail": "utm:a"}
    )
    assert made.status_code == 201 and _pair(made.json()) == ("ads", "utm:a")
    patched = await api.patch(f"/v1/contacts/{made.json()['id']}", json={"source_detail": "utm:b"})
    assert patched.status_code == 200 and _pair(patched.json()) == ("ads", "utm:b")

    batch = await api.post(
        "/v1/contacts/batch",
        json={"items": [{"email": "c2@x.example", "source": "web", "source_detail": "utm:c"}]},
    )
    assert batch.status_code == 200, batch.text
    assert _pair(await _one(api, "c2@x.example")) == ("web", "utm:c")
    upsert = await api.post(
        "/v1/contacts/batch",
        json={
            "mode": "upsert",
            "items": [{"email": "c2@x.example", "source": "event", "source_detail": None}],
        },
    )
    assert upsert.status_code == 200, upsert.text
    assert _pair(await _one(api, "c2@x.example")) == ("event", None)

    by_email = await api.put(
        "/v1/contacts/by-email/c3@x.example", json={"source": "partner", "source_detail": "p1"}
    )
    assert by_email.status_code == 201 and _pair(by_email.json()) == ("partner", "p1")
    again = await api.put("/v1/contacts/by-email/c3@x.example", json={"source_detail": "p2"})
    assert again.status_code == 200 and _pair(again.json()) == ("partner", "p2")

    by_id = await api.put(
        "/v1/contacts/by-external-id/crm/c4",
        json={"email": "c4@x.example", "source": "ads", "source_detail": "utm:d"},
    )
    assert by_id.status_code == 201 and _pair(by_id.json()) == ("ads", "utm:d")
    assert (
        await api.post(
            "/v1/custom-fields",
            json={"object_type": "contact", "name": "crm_no", "label": "No", "type": "text", "unique": True},
        )
    ).status_code == 201
    by_field = await api.put(
        "/v1/contacts/by-custom-field/crm_no/7",
        json={"email": "c5@x.example", "source": "web", "source_detail": "f"},
    )
    assert by_field.status_code == 201, by_field.text
    assert _pair(by_field.json()) == ("web", "f")

    assert (
        await api.put("/v1/orders/shop/o-6", json=_order("c6@x.example", "shop", "utm:e"))
    ).status_code == 201
    assert _pair(await _one(api, "c6@x.example")) == ("shop", "utm:e")
    batched = await api.post(
        "/v1/orders/batch",
        json={
            "items": [
                {"source": "shop", "external_id": "o-7", "order": _order("c7@x.example", "ads", "utm:f")}
            ]
        },
    )
    assert batched.status_code == 200, batched.text
    assert _pair(await _one(api, "c7@x.example")) == ("ads", "utm:f")
    # an order for a contact that exists leaves its source alone (the first touch is kept)
    assert (
        await api.put("/v1/orders/shop/o-8", json=_order("c7@x.example", "web", "utm:g"))
    ).status_code == 201
    assert _pair(await _one(api, "c7@x.example")) == ("ads", "utm:f")

    listed = (await api.get("/v1/contacts", params={"source": "ads"})).json()["data"]
    assert sorted(c["email"] for c in listed) == ["c1@x.example", "c4@x.example", "c7@x.example"]
    detail = (await api.get("/v1/contacts", params={"source_detail": "utm:b"})).json()["data"]
    assert [c["email"] for c in detail] == ["c1@x.example"]
    searched = await api.post(
        "/v1/contacts/search",
        json={"filter": {"field": "source_detail", "op": "in", "value": ["utm:d", "utm:f"]}},
    )
    assert searched.status_code == 200, searched.text
    assert sorted(c["email"] for c in searched.json()["data"]) == ["c4@x.example", "c7@x.example"]
    counted = await api.post(
        "/v1/contacts/aggregate", json={"group_by": ["source"], "metrics": [{"op": "count"}]}
    )
    assert [(r["group"]["source"], r["values"]["count"]) for r in counted.json()["rows"]] == [
        ("ads", 3),
        ("event", 1),
        ("partner", 1),
        ("shop", 1),
        ("web", 1),
    ]
    cleared = await api.patch(
        f"/v1/contacts/{made.json()['id']}", json={"source": None, "source_detail": None}
    )
    assert cleared.status_code == 200 and _pair(cleared.json()) == (None, None)
    today = {"from": "2026-01-01", "to": "2030-12-31"}
    sources = (await api.get("/v1/reports/attribution", params=today)).json()["sources"]
    assert [(s["source"], s["contacts"]) for s in sources] == [
        ("ads", 2),
        ("event", 1),
        ("partner", 1),
        ("shop", 1),
        ("web", 1),
        (None, 1),
    ]
