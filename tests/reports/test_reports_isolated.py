"""Another workspace's data never shows in a report or an aggregate: workspace A asks every report (JSON
and CSV, with and without the archived) and every resource's aggregate before and after workspace B fills
the same periods with deals won, lost and open, tickets, orders and contacts with a lifecycle; A's answers
do not move, and are empty, while B's answers to the same questions count B's data."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import httpx
from clients import MakeClient
from report_data import archive, at, deal

Q1 = {"from": "2026-01-01", "to": "2026-03-31"}
REPORTS: list[tuple[str, dict[str, str]]] = [
    ("pipeline", {}),
    ("pipeline", {"as_of": "2026-02-15T00:00:00Z"}),
    ("forecast", Q1),
    ("forecast", {**Q1, "group_by": "owner"}),
    ("win-rate", Q1),
    ("win-rate", {**Q1, "group_by": "source"}),
    ("sales-cycle", Q1),
    ("service", Q1),
    ("service", {**Q1, "group_by": "channel"}),
    ("customers", {"as_of": "2026-06-01T00:00:00Z"}),
    ("lead-conversion", Q1),
    ("lead-conversion", {**Q1, "group_by": "source"}),
    ("attribution", Q1),
]
RESOURCES = [
    "activities",
    "automations",
    "companies",
    "contacts",
    "custom-fields",
    "deals",
    "members",
    "scoring-rules",
    "segments",
    "sla-policies",
    "teams",
    "tickets",
]
_MONEY = re.compile(r"^[0-9]+\.[0-9]{2}$")


def _counted(node: Any, key: str = "") -> list[str]:
    """What an answer counts: every number but a stage's probability and the churn days asked, and every
    amount of money."""
    if isinstance(node, dict):
        return [found for k, v in node.items() for found in _counted(v, k)]
    if isinstance(node, list):
        return [found for v in node for found in _counted(v, key)]
    if isinstance(node, bool) or node is None:
        return []
    if isinstance(node, int | float):
        return [f"{key}={node}"] if node != 0 and key not in ("probability", "churn_days") else []
    if isinstance(node, str) and _MONEY.match(node):
        return [f"{key}={node}"]
    return []


async def _answers(api: httpx.AsyncClient) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for archived in ("false", "true"):
        for report, query in REPORTS:
            asked = {**query, "include_archived": archived}
            answer = await api.get(f"/v1/reports/{report}", params=asked)
            assert answer.status_code == 200, (report, answer.text)
            body = answer.json()
            body.pop("pipeline_id", None)  # each workspace's own default pipeline
            for stage in body.get("stages", ()):
                stage.pop("stage_id")
            out[f"{report} {sorted(asked.items())}"] = body
            sheet = await api.get(f"/v1/reports/{report}", params=asked, headers={"Accept": "text/csv"})
            out[f"{report} {sorted(asked.items())} csv"] = re.sub(
                r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", sheet.text
            )
        for resource in RESOURCES:
            answer = await api.post(
                f"/v1/{resource}/aggregate",
                json={"metrics": [{"op": "count"}], "include_archived": archived == "true"},
            )
            assert answer.status_code == 200, (resource, answer.text)
            out[f"{resource} aggregate {archived}"] = answer.json()
    return out


async def _fill(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    """Workspace B: one of everything each report counts, inside Q1 2026."""
    pipe = next(p for p in (await api.get("/v1/pipelines")).json()["data"] if p["is_default"])
    kinds: dict[str, str] = {}
    for stage in pipe["stages"]:
        kinds.setdefault(stage["kind"], stage["name"])
    opened, won, lost = kinds["open"], kinds["won"], kinds["lost"]
    owner = str(uuid.uuid4())
    await deal(
        api,
        pool,
        pipe,
        [(opened, "2026-01-05T10:00:00Z"), (won, "2026-02-01T03:00:00Z")],
        "100.00",
        "USD",
        owner_id=owner,
        source="web",
    )
    await deal(
        api,
        pool,
        pipe,
        [(opened, "2026-01-02T10:00:00Z"), (lost, "2026-01-10T10:00:00Z")],
        "40.00",
        "EUR",
        owner_id=owner,
        lost_reason="price",
    )
    await deal(
        api,
        pool,
        pipe,
        [(opened, "2026-01-02T10:00:00Z")],
        "50.00",
        "USD",
        owner_id=owner,
        expected_close_date="2026-02-10",
    )
    await deal(api, pool, pipe, [(opened, "2026-01-03T10:00:00Z")], "70.00", "USD")  # unscheduled
    gone = await deal(
        api,
        pool,
        pipe,
        [(opened, "2026-01-04T10:00:00Z"), (won, "2026-01-20T10:00:00Z")],
        "900.00",
        "USD",
        expected_close_date="2026-01-25",
    )
    await archive(api, pool, gone, "2026-03-01T00:00:00Z")

    ws = api.workspace_id  # type: ignore[attr-defined]
    ticket = (await api.post("/v1/tickets", json={"subject": "help", "channel": "email"})).json()
    await pool.execute(
        "UPDATE tickets SET created_at = $3, first_responded_at = $3::timestamptz + interval '1 hour', "
        "solved_at = $3::timestamptz + interval '2 hours' WHERE workspace_id = $1 AND id = $2",
        ws,
        uuid.UUID(ticket["id"]),
        at("2026-01-05T10:00:00Z"),
    )
    order = {
        "customer": {"email": "buyer@example.com", "source": "ads"},
        "status": "paid",
        "currency": "USD",
        "totals": {"total": "30.00"},
        "placed_at": "2026-02-02T10:00:00Z",
        "updated_at": "2026-02-02T10:00:00Z",
    }
    assert (await api.put("/v1/orders/shop/b-1", json=order)).status_code == 201
    lead = (await api.post("/v1/contacts", json={"lifecycle_stage": "lead", "source": "ads"})).json()
    assert (
        await api.patch(f"/v1/contacts/{lead['id']}", json={"lifecycle_stage": "customer"})
    ).status_code == 200
    archived = (await api.post("/v1/contacts", json={"lifecycle_stage": "lead", "source": "web"})).json()
    assert (await api.delete(f"/v1/contacts/{archived['id']}")).status_code == 200
    await pool.execute(
        "UPDATE contacts SET created_at = $2 WHERE workspace_id = $1", ws, at("2026-01-05T00:00:00Z")
    )
    await pool.execute(
        "UPDATE contact_lifecycle_changes SET changed_at = $2::timestamptz "
        "+ (CASE WHEN to_stage = 'customer' THEN interval '10 days' ELSE interval '0' END) "
        "WHERE workspace_id = $1",
        ws,
        at("2026-01-05T00:00:00Z"),
    )
    assert (await api.post("/v1/companies", json={"name": "B corp"})).status_code == 201
    made = await api.post("/v1/activities", json={"type": "note", "body": "b"})
    assert made.status_code == 201, made.text


async def test_no_report_and_no_aggregate_sees_another_workspace(
    make_client: MakeClient, pool: asyncpg.Pool
) -> None:
    mine = await make_client()
    before = await _answers(mine)
    for name, body in before.items():
        if not name.endswith("csv") and "aggregate" not in name:
            assert _counted(body) == [], (name, body)

    theirs = await make_client()
    await _fill(theirs, pool)
    after = await _answers(mine)
    for name in before:
        assert after[name] == before[name], (name, before[name], after[name])

    # the same questions asked in B count B's data: the periods above do hold it
    seen = await _answers(theirs)
    for name, body in seen.items():
        if name.endswith("csv") or "aggregate" in name:
            continue
        assert _counted(body) != [], name
    for resource in ("activities", "companies", "contacts", "deals", "tickets"):
        for archived in ("false", "true"):
            name = f"{resource} aggregate {archived}"
            assert seen[name]["rows"][0]["values"]["count"] > before[name]["rows"][0]["values"]["count"]
