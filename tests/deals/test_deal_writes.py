"""Deals: the stage state machine (status and closed_at follow the stage kind), the stage history on every
write path, the events of each move, and stage removal with and without moving the deals."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import asyncpg
import httpx
import pytest


async def _pipeline(api: httpx.AsyncClient) -> dict[str, Any]:
    data = (await api.get("/v1/pipelines")).json()["data"]
    p = next(p for p in data if p["is_default"])
    p["by_name"] = {s["name"]: s["id"] for s in p["stages"]}
    return p


async def _history(api: httpx.AsyncClient, deal_id: str) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/deals/{deal_id}/stage-history")
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def _events(pool: asyncpg.Pool, api: httpx.AsyncClient) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT type, object_id, data, actor FROM events WHERE workspace_id = $1 AND type LIKE 'deal.%' "
        "ORDER BY sequence",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    return [dict(r) for r in rows]


async def test_create_defaults_to_the_default_pipeline_and_its_first_open_stage(
    api: httpx.AsyncClient,
) -> None:
    p = await _pipeline(api)
    r = await api.post("/v1/deals", json={"name": "Big one", "amount": "1250.5", "currency": "EUR"})
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["object"] == "deal" and d["pipeline_id"] == p["id"]
    assert d["stage_id"] == p["by_name"]["Lead in"] and d["status"] == "open" and d["closed_at"] is None
    assert d["amount"] == "1250.50" and r.headers["location"] == f"/v1/deals/{d['id']}"
    history = await _history(api, d["id"])
    assert [(h["from_stage_id"], h["to_stage_id"], h["left_at"]) for h in history] == [
        (None, p["by_name"]["Lead in"], None)
    ]
    assert history[0]["actor"].startswith("api_key:") and history[0]["seconds_in_stage"] >= 0
    # a stage alone names its pipeline
    other = (
        await api.post("/v1/pipelines", json={"name": "O", "stages": [{"name": "A"}, {"name": "B"}]})
    ).json()
    r = await api.post("/v1/deals", json={"name": "x", "stage_id": other["stages"][1]["id"]})
    assert r.status_code == 201 and r.json()["pipeline_id"] == other["id"]
    r = await api.post("/v1/deals", json={"name": "x", "pipeline_id": other["id"]})
    assert r.json()["stage_id"] == other["stages"][0]["id"]


async def test_stage_kinds_drive_status_and_closed_at(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    p = await _pipeline(api)
    d = (await api.post("/v1/deals", json={"name": "D"})).json()
    url = f"/v1/deals/{d['id']}"
    won = (await api.patch(url, json={"stage_id": p["by_name"]["Won"]})).json()
    assert won["status"] == "won" and won["closed_at"] is not None and won["version"] == 2
    renamed = (await api.patch(url, json={"name": "D2"})).json()
    assert renamed["closed_at"] == won["closed_at"]  # unchanged while the status stays
    lost = (await api.patch(url, json={"stage_id": p["by_name"]["Lost"], "lost_reason": "price"})).json()
    assert lost["status"] == "lost" and lost["closed_at"] is not None and lost["lost_reason"] == "price"
    reopened = (await api.patch(url, json={"stage_id": p["by_name"]["Proposal"]})).json()
    assert reopened["status"] == "open" and reopened["closed_at"] is None
    writable = await api.patch(url, json={"status": "won"})
    assert writable.status_code == 422 and writable.json()["errors"][0]["path"] == "/status"
    events = await _events(pool, api)
    assert [e["type"] for e in events] == [
        "deal.created",
        "deal.updated",
        "deal.stage_changed",
        "deal.won",
        "deal.updated",
        "deal.updated",
        "deal.stage_changed",
        "deal.lost",
        "deal.updated",
        "deal.stage_changed",
    ]
    moved = events[2]["data"]
    assert moved["previous"]["stage_id"] == p["by_name"]["Lead in"]
    assert moved["object"]["stage_id"] == p["by_name"]["Won"] and moved["previous"]["status"] == "open"
    history = await _history(api, d["id"])
    names = {v: k for k, v in p["by_name"].items()}
    assert [(names.get(h["from_stage_id"]), names[h["to_stage_id"]]) for h in history] == [
        (None, "Lead in"),
        ("Lead in", "Won"),
        ("Won", "Lost"),
        ("Lost", "Proposal"),
    ]
    assert all(h["left_at"] == n["changed_at"] for h, n in itertools.pairwise(history))
    assert history[-1]["left_at"] is None


async def test_created_in_a_won_stage_is_closed_at_once(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    p = await _pipeline(api)
    d = (await api.post("/v1/deals", json={"name": "W", "stage_id": p["by_name"]["Won"]})).json()
    assert d["status"] == "won" and d["closed_at"] is not None
    assert [e["type"] for e in await _events(pool, api)] == ["deal.created", "deal.won"]


async def test_stage_must_belong_to_the_pipeline(api: httpx.AsyncClient) -> None:
    p = await _pipeline(api)
    other = (await api.post("/v1/pipelines", json={"name": "O", "stages": [{"name": "A"}]})).json()
    bad = await api.post(
        "/v1/deals", json={"name": "x", "pipeline_id": p["id"], "stage_id": other["stages"][0]["id"]}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "/stage_id"
    d = (await api.post("/v1/deals", json={"name": "x"})).json()
    moved = await api.patch(f"/v1/deals/{d['id']}", json={"stage_id": other["stages"][0]["id"]})
    assert moved.status_code == 422 and moved.json()["errors"][0]["path"] == "/stage_id"
    nowhere = await api.post(
        "/v1/deals", json={"name": "x", "stage_id": "01a20d7c-a713-740d-9cf9-412be9a77d65"}
    )
    assert nowhere.status_code == 422 and nowhere.json()["errors"][0]["path"] == "/stage_id"
    cleared = await api.patch(f"/v1/deals/{d['id']}", json={"stage_id": None})
    assert cleared.status_code == 422 and cleared.json()["errors"][0]["path"] == "/stage_id"
    # changing the pipeline alone lands on its first open stage
    switched = await api.patch(f"/v1/deals/{d['id']}", json={"pipeline_id": other["id"]})
    assert switched.status_code == 200 and switched.json()["stage_id"] == other["stages"][0]["id"]
    no_currency = await api.post("/v1/deals", json={"name": "x", "amount": "10"})
    assert no_currency.status_code == 422 and no_currency.json()["errors"][0]["path"] == "/currency"
    await api.delete(f"/v1/pipelines/{other['id']}")
    archived = await api.post("/v1/deals", json={"name": "x", "pipeline_id": other["id"]})
    assert archived.status_code == 422 and archived.json()["errors"][0]["path"] == "/pipeline_id"


async def test_batch_and_upsert_record_stage_moves(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    p = await _pipeline(api)
    other = (await api.post("/v1/pipelines", json={"name": "O", "stages": [{"name": "A"}]})).json()
    items = [
        {"name": "a", "external_ids": {"crm": "1"}},
        {"name": "b", "stage_id": p["by_name"]["Won"], "external_ids": {"crm": "2"}},
        {"name": "c", "pipeline_id": p["id"], "stage_id": other["stages"][0]["id"]},
        {"name": "d", "stage_id": p["by_name"]["Qualified"]},
    ]
    r = await api.post("/v1/deals/batch", json={"items": items})
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 201, 422, 201]
    assert results[2]["error"]["errors"][0]["path"] == "/items/2/stage_id"
    assert results[1]["object"]["status"] == "won"
    upsert = [
        {"name": "a", "stage_id": p["by_name"]["Lost"], "external_ids": {"crm": "1"}},
        {"name": "e", "external_ids": {"crm": "3"}},
    ]
    r = await api.post("/v1/deals/batch", json={"items": upsert, "mode": "upsert"})
    results = r.json()["results"]
    assert [x["status"] for x in results] == [200, 201]
    assert results[0]["object"]["status"] == "lost"
    a = results[0]["object"]["id"]
    assert [h["to_stage_id"] for h in await _history(api, a)] == [
        p["by_name"]["Lead in"],
        p["by_name"]["Lost"],
    ]
    put = await api.put("/v1/deals/by-external-id/crm/3", json={"stage_id": p["by_name"]["Won"]})
    assert put.status_code == 200 and put.json()["status"] == "won"
    assert len(await _history(api, put.json()["id"])) == 2
    count = await pool.fetchval(
        "SELECT count(*) FROM deal_stage_changes WHERE workspace_id = $1",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    assert count == 3 + 1 + 1 + 1  # three entered at creation, e created, a moved, e moved


async def test_removing_a_stage_with_deals(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    p = await _pipeline(api)
    url = f"/v1/pipelines/{p['id']}"
    proposal, won = p["by_name"]["Proposal"], p["by_name"]["Won"]
    deals = [
        (await api.post("/v1/deals", json={"name": f"d{i}", "stage_id": proposal})).json() for i in range(3)
    ]
    await api.delete(f"/v1/deals/{deals[2]['id']}")  # archived deals move too
    blocked = await api.delete(f"{url}/stages/{proposal}")
    assert blocked.status_code == 409 and blocked.json()["errors"][0]["path"] == "/move_to_stage_id"
    assert proposal in [s["id"] for s in (await api.get(url)).json()["stages"]]
    wrong = await api.delete(f"{url}/stages/{proposal}", params={"move_to_stage_id": proposal})
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["path"] == "/move_to_stage_id"
    kind = await api.patch(f"{url}/stages/{proposal}", json={"kind": "won"})
    assert kind.status_code == 409 and kind.json()["errors"][0]["path"] == "/kind"
    removed = await api.delete(f"{url}/stages/{proposal}", params={"move_to_stage_id": won})
    assert removed.status_code == 200, removed.text
    assert proposal not in [s["id"] for s in removed.json()["stages"]]
    for d in deals:
        now = (await api.get(f"/v1/deals/{d['id']}")).json()
        assert now["stage_id"] == won and now["status"] == "won" and now["closed_at"] is not None
        assert now["version"] == d["version"] + (2 if d is deals[2] else 1)
        history = await _history(api, d["id"])
        assert [(h["from_stage_id"], h["to_stage_id"]) for h in history][-1] == (proposal, won)
    types = [e["type"] for e in await _events(pool, api)]
    assert types.count("deal.stage_changed") == 3 and types.count("deal.won") == 3


async def test_concurrent_moves_with_one_if_match_one_wins_and_one_history_row(
    api: httpx.AsyncClient,
) -> None:
    p = await _pipeline(api)
    d = (await api.post("/v1/deals", json={"name": "race"})).json()
    targets = [p["by_name"][n] for n in ("Qualified", "Proposal", "Negotiation", "Won", "Lost")]
    responses = await asyncio.gather(
        *(
            api.patch(f"/v1/deals/{d['id']}", json={"stage_id": t}, headers={"If-Match": '"1"'})
            for t in targets
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 412, 412, 412, 412]
    assert len(await _history(api, d["id"])) == 2


async def test_the_database_keeps_status_equal_to_the_stage_kind(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Status is part of the deal's key to its stage, so no race (a stage's kind changing while a deal
    enters it) can leave a deal whose status disagrees with its stage."""
    d = (await api.post("/v1/deals", json={"name": "k"})).json()
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await pool.execute(
            "UPDATE deals SET status = 'won' WHERE workspace_id = $1 AND id = $2",
            api.workspace_id,  # type: ignore[attr-defined]
            d["id"],
        )


async def test_stage_history_pages_and_idempotent_replays_add_no_rows(api: httpx.AsyncClient) -> None:
    p = await _pipeline(api)
    headers = {"Idempotency-Key": "deal-1"}
    first = await api.post("/v1/deals", json={"name": "h"}, headers=headers)
    again = await api.post("/v1/deals", json={"name": "h"}, headers=headers)
    assert first.status_code == again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    url = f"/v1/deals/{first.json()['id']}"
    for name in ("Qualified", "Proposal", "Negotiation", "Won"):
        move = {"stage_id": p["by_name"][name]}
        assert (await api.patch(url, json=move, headers={"Idempotency-Key": f"m-{name}"})).status_code == 200
        assert (await api.patch(url, json=move, headers={"Idempotency-Key": f"m-{name}"})).status_code == 200
    page = (await api.get(f"{url}/stage-history", params={"limit": 2})).json()
    seen = list(page["data"])
    while page["has_more"]:
        page = (
            await api.get(f"{url}/stage-history", params={"limit": 2, "cursor": page["next_cursor"]})
        ).json()
        seen += page["data"]
    names = {v: k for k, v in p["by_name"].items()}
    assert [names[h["to_stage_id"]] for h in seen] == [
        "Lead in",
        "Qualified",
        "Proposal",
        "Negotiation",
        "Won",
    ]
    assert all(h["object"] == "deal_stage_change" and h["deal_id"] == first.json()["id"] for h in seen)
    assert [h["from_stage_id"] for h in seen[1:]] == [h["to_stage_id"] for h in seen[:-1]]
    bad = await api.get(f"{url}/stage-history", params={"cursor": "x"})
    assert bad.status_code == 400
    missing = await api.get("/v1/deals/01a20d7c-a713-740d-9cf9-412be9a77d65/stage-history")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
