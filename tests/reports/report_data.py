"""Building deals with known histories for the report tests: deals are created through the API in their
final stage, then their dates and stage history are rewritten in SQL to the moments a test needs (the API
stamps everything with now)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import httpx
from people import ensure_members


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


async def pipeline(api: httpx.AsyncClient, name: str, stages: list[dict[str, Any]]) -> dict[str, Any]:
    created = await api.post("/v1/pipelines", json={"name": name, "stages": stages})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def stage_ids(pipe: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["id"] for s in pipe["stages"]}


async def deal(
    api: httpx.AsyncClient,
    pool: asyncpg.Pool,
    pipe: dict[str, Any],
    stages: list[tuple[str, str]],
    amount: str | None = None,
    currency: str | None = None,
    created: str | None = None,
    closed: str | None = None,
    **fields: Any,
) -> str:
    """A deal of ``pipe`` whose stage history is ``stages`` (stage name, moment), its last the stage it is
    in; ``created`` defaults to the first move, ``closed`` to the last move of a won or lost deal."""
    ids = stage_ids(pipe)
    body: dict[str, Any] = {"name": f"deal {uuid.uuid4().hex[:6]}", "pipeline_id": pipe["id"], **fields}
    body["stage_id"] = ids[stages[-1][0]]
    if amount is not None:
        body["amount"], body["currency"] = amount, currency
    await ensure_members(pool, api, [fields.get("owner_id")])
    made = await api.post("/v1/deals", json=body)
    assert made.status_code == 201, made.text
    d = made.json()
    ws = api.workspace_id  # type: ignore[attr-defined]
    kinds = {s["name"]: s["kind"] for s in pipe["stages"]}
    if closed is None and kinds[stages[-1][0]] != "open":
        closed = stages[-1][1]
    await pool.execute(
        "UPDATE deals SET created_at = $3, closed_at = $4 WHERE workspace_id = $1 AND id = $2",
        ws,
        uuid.UUID(d["id"]),
        at(created or stages[0][1]),
        at(closed) if closed else None,
    )
    await pool.execute(
        "DELETE FROM deal_stage_changes WHERE workspace_id = $1 AND deal_id = $2", ws, uuid.UUID(d["id"])
    )
    previous = None
    for name, moment in stages:
        await pool.execute(
            "INSERT INTO deal_stage_changes (workspace_id, id, deal_id, pipeline_id, from_stage_id, "
            "to_stage_id, changed_at, actor) VALUES ($1, $2, $3, $4, $5, $6, $7, 'test')",
            ws,
            uuid.uuid4(),
            uuid.UUID(d["id"]),
            uuid.UUID(pipe["id"]),
            previous,
            uuid.UUID(ids[name]),
            at(moment),
        )
        previous = uuid.UUID(ids[name])
    return str(d["id"])


async def archive(api: httpx.AsyncClient, pool: asyncpg.Pool, deal_id: str, moment: str) -> None:
    assert (await api.delete(f"/v1/deals/{deal_id}")).status_code == 200
    await pool.execute(
        "UPDATE deals SET archived_at = $3 WHERE workspace_id = $1 AND id = $2",
        api.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(deal_id),
        at(moment),
    )
