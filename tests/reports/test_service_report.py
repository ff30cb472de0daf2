"""GET /v1/reports/service on tickets with known times: response and resolution minutes, SLA targets met
among those whose outcome is known, breaches, groups, a time zone, CSV; another workspace's tickets never
counted."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from typing import Any

import asyncpg
import httpx
from clients import MakeClient
from people import ensure_members
from report_data import at

A1, A2 = sorted([str(uuid.uuid4()), str(uuid.uuid4())])
JAN = {"from": "2026-01-01", "to": "2026-01-31"}


async def _ticket(
    api: httpx.AsyncClient,
    pool: asyncpg.Pool,
    created: str,
    responded: int | None = None,
    solved: int | None = None,
    due: tuple[int | None, int | str | None] = (None, None),
    breached: tuple[bool, bool] = (False, False),
    **fields: Any,
) -> str:
    """A ticket created at ``created``; times in minutes after it (a resolution due time may be a moment)."""
    await ensure_members(pool, api, [fields.get("assignee_id")])
    made = await api.post("/v1/tickets", json={"subject": "help", **fields})
    assert made.status_code == 201, made.text
    tid = made.json()["id"]
    start = at(created)

    def after(minutes: int | str | None) -> dt.datetime | None:
        if minutes is None:
            return None
        return at(minutes) if isinstance(minutes, str) else start + dt.timedelta(minutes=minutes)

    fr_due, res_due = after(due[0]), after(due[1])
    await pool.execute(
        "UPDATE tickets SET created_at = $3, first_responded_at = $4, solved_at = $5, "
        "first_response_due_at = $6, resolution_due_at = $7, first_response_breached_at = $8, "
        "resolution_breached_at = $9 "
        "WHERE workspace_id = $1 AND id = $2",
        api.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(tid),
        start,
        after(responded),
        after(solved),
        fr_due,
        res_due,
        fr_due if breached[0] else None,
        res_due if breached[1] else None,
    )
    return str(tid)


async def _desk(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await _ticket(
        api,
        pool,
        "2026-01-05T10:00:00Z",
        30,
        120,
        (60, 240),
        priority="high",
        channel="email",
        assignee_id=A1,
    )
    await _ticket(
        api,
        pool,
        "2026-01-06T10:00:00Z",
        90,
        600,
        (60, 240),
        (True, True),
        priority="high",
        channel="chat",
        assignee_id=A1,
    )
    await _ticket(
        api,
        pool,
        "2026-01-07T10:00:00Z",
        10,
        None,
        (60, "2026-01-08T10:00:00Z"),
        (False, True),
        priority="normal",
        channel="email",
        assignee_id=A2,
    )
    await _ticket(api, pool, "2026-01-08T10:00:00Z", priority="normal", channel="email")
    # 1 February 03:00 UTC: 31 January in New York
    await _ticket(api, pool, "2026-02-01T03:00:00Z", 20, 40, priority="low", channel="email", assignee_id=A2)
    gone = await _ticket(api, pool, "2026-01-09T10:00:00Z", 1, 2, priority="urgent")
    assert (await api.delete(f"/v1/tickets/{gone}")).status_code == 200


async def test_service_report_exact(make_client: MakeClient, pool: asyncpg.Pool) -> None:
    api = await make_client()
    await _desk(api, pool)
    other = await make_client()
    assert (await other.post("/v1/tickets", json={"subject": "not yours"})).status_code == 201

    answer = await api.get("/v1/reports/service", params=JAN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "service_report" and body["group_by"] is None
    assert body["groups"] == [
        {
            "created": 4,
            "resolved": 2,
            "first_response_minutes": {"median": 30.0, "p90": 78.0},  # 10, 30, 90
            "resolution_minutes": {"median": 360.0, "p90": 552.0},  # 120, 600
            "first_response_sla_met": 0.6667,
            "resolution_sla_met": 0.3333,  # the third ticket's due time passed unsolved
            "breaches": 3,
        }
    ]
    ny = (await api.get("/v1/reports/service", params={**JAN, "tz": "America/New_York"})).json()["groups"][0]
    assert (ny["created"], ny["resolved"]) == (5, 3)
    assert ny["first_response_minutes"] == {"median": 25.0, "p90": 72.0}  # 10, 20, 30, 90

    by_priority = (await api.get("/v1/reports/service", params={**JAN, "group_by": "priority"})).json()
    assert by_priority["groups"] == [
        {
            "group": "high",
            "created": 2,
            "resolved": 2,
            "first_response_minutes": {"median": 60.0, "p90": 84.0},
            "resolution_minutes": {"median": 360.0, "p90": 552.0},
            "first_response_sla_met": 0.5,
            "resolution_sla_met": 0.5,
            "breaches": 2,
        },
        {
            "group": "normal",
            "created": 2,
            "resolved": 0,
            "first_response_minutes": {"median": 10.0, "p90": 10.0},
            "resolution_minutes": {"median": None, "p90": None},
            "first_response_sla_met": 1.0,
            "resolution_sla_met": 0.0,
            "breaches": 1,
        },
    ]
    by_assignee = (await api.get("/v1/reports/service", params={**JAN, "group_by": "assignee"})).json()
    assert [(g["group"], g["created"]) for g in by_assignee["groups"]] == [(A1, 2), (A2, 1), (None, 1)]
    archived = (await api.get("/v1/reports/service", params={**JAN, "include_archived": "1"})).json()
    assert archived["groups"][0]["created"] == 5

    sheet = await api.get(
        "/v1/reports/service", params={**JAN, "group_by": "channel"}, headers={"Accept": "text/csv"}
    )
    rows = list(csv.DictReader(io.StringIO(sheet.text)))
    assert [(r["group"], r["created"], r["first_response_minutes.median"]) for r in rows] == [
        ("chat", "1", "90.0"),
        ("email", "3", "20.0"),
    ]
    bad = await api.get("/v1/reports/service", params={"group_by": "status"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "/group_by"
