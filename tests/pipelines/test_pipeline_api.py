"""Pipelines and their stages: the default pipeline, stage rules, If-Match, idempotency, events."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx


async def _default(api: httpx.AsyncClient) -> dict[str, Any]:
    data = (await api.get("/v1/pipelines")).json()["data"]
    return next(p for p in data if p["is_default"])


async def _event_types(pool: asyncpg.Pool, api: httpx.AsyncClient, prefix: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT type FROM events WHERE workspace_id = $1 AND type LIKE $2 ORDER BY sequence",
        api.workspace_id,  # type: ignore[attr-defined]
        prefix + "%",
    )
    return [r["type"] for r in rows]


async def test_a_new_workspace_has_the_default_sales_pipeline(api: httpx.AsyncClient) -> None:
    listed = (await api.get("/v1/pipelines")).json()
    assert listed["object"] == "list" and len(listed["data"]) == 1
    p = listed["data"][0]
    assert p["object"] == "pipeline" and p["is_default"] and p["version"] == 1
    names = [(s["name"], s["kind"], s["position"]) for s in p["stages"]]
    assert names == [
        ("Lead in", "open", 0),
        ("Qualified", "open", 1),
        ("Proposal", "open", 2),
        ("Negotiation", "open", 3),
        ("Won", "won", 4),
        ("Lost", "lost", 5),
    ]
    assert p["stages"][4]["probability"] == 1.0 and p["stages"][5]["probability"] == 0.0
    got = await api.get(f"/v1/pipelines/{p['id']}")
    assert got.status_code == 200 and got.headers["etag"] == '"1"' and got.json() == p


async def test_create_with_positions_and_the_rules_for_stages(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    body = {
        "name": "Renewals",
        "stages": [
            {"name": "Closed", "kind": "won", "position": 20},
            {"name": "Due", "position": 0, "probability": 0.5},
            {"name": "Talking", "position": 10, "probability": 0.75},
        ],
    }
    r = await api.post("/v1/pipelines", json=body)
    assert r.status_code == 201, r.text
    p = r.json()
    assert r.headers["location"] == f"/v1/pipelines/{p['id']}" and r.headers["etag"] == '"1"'
    assert [(s["name"], s["position"]) for s in p["stages"]] == [("Due", 0), ("Talking", 1), ("Closed", 2)]
    assert [s["probability"] for s in p["stages"]] == [0.5, 0.75, 1.0]
    assert not p["is_default"]
    bad: list[tuple[dict[str, Any], str]] = [
        ({"name": "X", "stages": [{"name": "A", "position": 1}, {"name": "B", "position": 1}]},
         "/stages/1/position"),
        ({"name": "X", "stages": [{"name": "A", "position": 1}, {"name": "B"}]}, "/stages/1/position"),
        ({"name": "X", "stages": [{"name": "A", "probability": 1.5}]}, "/stages/0/probability"),
        ({"name": "X", "stages": [{"name": "A", "kind": "won"}, {"name": "B", "kind": "lost"}]}, "/stages"),
        ({"name": "X", "stages": [{"name": "A"}, {"name": "a"}]}, "/stages/1/name"),
        ({"name": "X", "stages": [{"name": "A", "kind": "maybe"}]}, "/stages/0/kind"),
        ({"name": "X", "stages": []}, "/stages"),
        ({"stages": [{"name": "A"}]}, "/name"),
    ]  # fmt: skip
    for payload, path in bad:
        r = await api.post("/v1/pipelines", json=payload)
        assert r.status_code == 422, (payload, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["path"] == path, (payload, r.json())
    # the default pipeline came with the workspace (no event); only the client's pipeline has one
    assert await _event_types(pool, api, "pipeline.") == ["pipeline.created"]


async def test_add_rename_reorder_and_remove_stages(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    p = await _default(api)
    url = f"/v1/pipelines/{p['id']}"
    added = await api.post(f"{url}/stages", json={"name": "Demo", "position": 2, "probability": 0.3})
    assert added.status_code == 200, added.text
    stages = added.json()["stages"]
    assert [s["name"] for s in stages][:4] == ["Lead in", "Qualified", "Demo", "Proposal"]
    assert [s["position"] for s in stages] == list(range(7))
    assert added.json()["version"] == 2 and added.headers["etag"] == '"2"'
    demo = stages[2]["id"]
    renamed = await api.patch(f"{url}/stages/{demo}", json={"name": "Live demo", "probability": 0.35})
    assert renamed.status_code == 200
    assert renamed.json()["stages"][2] == {**stages[2], "name": "Live demo", "probability": 0.35}
    dup = await api.patch(f"{url}/stages/{demo}", json={"name": "proposal"})
    assert dup.status_code == 422 and dup.json()["errors"][0]["path"] == "/name"
    order = [s["id"] for s in reversed(renamed.json()["stages"])]
    reordered = await api.put(f"{url}/stages/order", json={"stage_ids": order})
    assert reordered.status_code == 200
    assert [s["id"] for s in reordered.json()["stages"]] == order
    partial = await api.put(f"{url}/stages/order", json={"stage_ids": order[:-1]})
    assert partial.status_code == 422 and partial.json()["errors"][0]["path"] == "/stage_ids"
    removed = await api.delete(f"{url}/stages/{demo}")
    assert removed.status_code == 200
    assert demo not in [s["id"] for s in removed.json()["stages"]]
    assert [s["position"] for s in removed.json()["stages"]] == list(range(6))
    missing = await api.delete(f"{url}/stages/{demo}")
    assert missing.status_code == 404
    events = await pool.fetch(
        "SELECT type, data FROM events WHERE workspace_id = $1 AND type LIKE 'pipeline.%' ORDER BY sequence",
        api.workspace_id,  # type: ignore[attr-defined]
    )
    assert [e["type"] for e in events] == ["pipeline.updated"] * 4
    assert events[-1]["data"]["object"] == removed.json()
    assert len(events[-1]["data"]["previous"]["stages"]) == 7


async def test_the_last_open_stage_cannot_go(api: httpx.AsyncClient) -> None:
    p = (
        await api.post(
            "/v1/pipelines", json={"name": "P", "stages": [{"name": "A"}, {"name": "W", "kind": "won"}]}
        )
    ).json()
    only = p["stages"][0]["id"]
    r = await api.delete(f"/v1/pipelines/{p['id']}/stages/{only}")
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/stages"
    r = await api.patch(f"/v1/pipelines/{p['id']}/stages/{only}", json={"kind": "lost"})
    assert r.status_code == 422
    late = await api.post(f"/v1/pipelines/{p['id']}/stages", json={"name": "Z", "position": 9})
    assert late.status_code == 422 and late.json()["errors"][0]["path"] == "/position"


async def test_if_match_and_idempotency_on_stage_writes(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    p = await _default(api)
    url = f"/v1/pipelines/{p['id']}"
    stale = await api.patch(url, json={"name": "Deals"}, headers={"If-Match": '"7"'})
    assert stale.status_code == 412 and stale.json()["code"] == "precondition_failed"
    ok = await api.patch(url, json={"name": "Deals"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200 and ok.json()["version"] == 2
    stale = await api.post(f"{url}/stages", json={"name": "X"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    headers = {"Idempotency-Key": "add-x"}
    first = await api.post(f"{url}/stages", json={"name": "X"}, headers=headers)
    again = await api.post(f"{url}/stages", json={"name": "X"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    other = await api.post(f"{url}/stages", json={"name": "Y"}, headers=headers)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    got = (await api.get(url)).json()
    assert [s["name"] for s in got["stages"]].count("X") == 1 and got["version"] == 3
    assert await _event_types(pool, api, "pipeline.") == ["pipeline.updated"] * 2


async def test_default_moves_and_the_default_cannot_be_archived(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    old = await _default(api)
    new = (await api.post("/v1/pipelines", json={"name": "B", "stages": [{"name": "A"}]})).json()
    blocked = await api.delete(f"/v1/pipelines/{old['id']}")
    assert blocked.status_code == 409
    made = await api.patch(f"/v1/pipelines/{new['id']}", json={"is_default": True})
    assert made.status_code == 200 and made.json()["is_default"]
    assert not (await api.get(f"/v1/pipelines/{old['id']}")).json()["is_default"]
    unset = await api.patch(f"/v1/pipelines/{new['id']}", json={"is_default": False})
    assert unset.status_code == 422
    archived = await api.delete(f"/v1/pipelines/{old['id']}")
    assert archived.status_code == 200 and archived.json()["archived_at"] is not None
    assert [p["id"] for p in (await api.get("/v1/pipelines")).json()["data"]] == [new["id"]]
    everything = (await api.get("/v1/pipelines", params={"include_archived": "true"})).json()["data"]
    assert {p["id"] for p in everything} == {old["id"], new["id"]}
    restored = await api.post(f"/v1/pipelines/{old['id']}/restore")
    assert restored.status_code == 200 and restored.json()["archived_at"] is None
    # a third pipeline created as the default takes over in the same request
    third = (
        await api.post("/v1/pipelines", json={"name": "C", "is_default": True, "stages": [{"name": "A"}]})
    ).json()
    defaults = [p["id"] for p in (await api.get("/v1/pipelines")).json()["data"] if p["is_default"]]
    assert defaults == [third["id"]]
    types = await _event_types(pool, api, "pipeline.")
    assert types.count("pipeline.archived") == 1 and types.count("pipeline.restored") == 1


async def test_list_pages_with_cursors(api: httpx.AsyncClient) -> None:
    for n in range(3):
        await api.post("/v1/pipelines", json={"name": f"P{n}", "stages": [{"name": "A"}]})
    first = (await api.get("/v1/pipelines", params={"limit": 2})).json()
    assert len(first["data"]) == 2 and first["has_more"]
    second = (await api.get("/v1/pipelines", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [p["name"] for p in second["data"]] == ["P1", "P2"] and not second["has_more"]
    bad = await api.get("/v1/pipelines", params={"cursor": "nonsense"})
    assert bad.status_code == 400


async def test_concurrent_stage_edits_of_one_pipeline_all_apply(api: httpx.AsyncClient) -> None:
    """Stage writes lock the pipeline row, so concurrent adds queue: none is lost, positions stay dense."""
    p = await _default(api)
    responses = await asyncio.gather(
        *(
            api.post(f"/v1/pipelines/{p['id']}/stages", json={"name": f"S{i}", "position": 1})
            for i in range(8)
        )
    )
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    final = (await api.get(f"/v1/pipelines/{p['id']}")).json()
    assert final["version"] == 9 and len(final["stages"]) == 14
    assert [s["position"] for s in final["stages"]] == list(range(14))
    assert {f"S{i}" for i in range(8)} <= {s["name"] for s in final["stages"]}


async def test_removing_a_stage_while_deals_enter_it(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    """A deal created into a stage while the stage is removed either moves with the others or is refused;
    nothing is left pointing at the removed stage and nothing answers 500."""
    p = await _default(api)
    stage, target = p["stages"][1]["id"], p["stages"][0]["id"]
    url = f"/v1/pipelines/{p['id']}/stages/{stage}"

    async def creates() -> list[httpx.Response]:
        out = []
        for i in range(15):
            out.append(await api.post("/v1/deals", json={"name": f"d{i}", "stage_id": stage}))
        return out

    async def remove() -> httpx.Response:
        await asyncio.sleep(0.02)
        return await api.delete(url, params={"move_to_stage_id": target})

    created, removed = await asyncio.gather(creates(), remove())
    assert removed.status_code in (200, 409), removed.text
    assert all(r.status_code in (201, 422) for r in created), [r.text for r in created]
    left = await pool.fetchval(
        "SELECT count(*) FROM deals WHERE workspace_id = $1 AND stage_id = $2",
        api.workspace_id,  # type: ignore[attr-defined]
        stage,
    )
    stages = [s["id"] for s in (await api.get(f"/v1/pipelines/{p['id']}")).json()["stages"]]
    assert (stage in stages) == (left > 0)
    if removed.status_code == 200:
        assert all(r.json()["errors"][0]["path"] == "/stage_id" for r in created if r.status_code == 422)


async def test_more_stage_rules_are_problems_naming_the_field(api: httpx.AsyncClient) -> None:
    p = await _default(api)
    url = f"/v1/pipelines/{p['id']}"
    stage = p["stages"][0]["id"]
    cases = [
        (api.patch(f"{url}/stages/{stage}", json={"kind": None}), 422, "/kind"),
        (api.patch(f"{url}/stages/{stage}", json={"probability": -0.1}), 422, "/probability"),
        (api.patch(f"{url}/stages/{stage}", json={"colour": "red"}), 422, "/colour"),
        (api.put(f"{url}/stages/order", json={"stage_ids": [stage] * 6}), 422, "/stage_ids"),
        (api.post(f"{url}/stages", json={"name": "Won"}), 422, "/name"),
        (api.patch(url, json={"name": None}), 422, "/name"),
        (
            api.delete(f"{url}/stages/{stage}", params={"move_to_stage_id": "nope"}),
            422,
            "/query/move_to_stage_id",
        ),
    ]
    for call, status, path in cases:
        r = await call
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["path"] == path, r.json()
    unknown = "01a20d7c-a713-740d-9cf9-412be9a77d65"
    assert (await api.patch(f"{url}/stages/{unknown}", json={"name": "x"})).status_code == 404
    assert (await api.get(f"/v1/pipelines/{unknown}")).status_code == 404
    assert (await api.get(url)).json()["version"] == 1  # nothing was written
