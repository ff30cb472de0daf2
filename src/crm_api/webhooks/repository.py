"""SQL for webhook endpoints and deliveries (the dispatcher's own SQL lives in dispatcher.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

_ENDPOINT = (
    "id, url, description, event_types, ordering, status, disabled_reason, created_at, updated_at, version, "
    "secret, previous_secret, previous_secret_expires_at"
)
_DELIVERY = (
    "id, endpoint_id, event_id, event_type, event_sequence, status, attempts, next_attempt_at, "
    "last_status_code, last_error, created_at, delivered_at"
)


def endpoint_api(row: dict[str, Any], with_secret: bool = False) -> dict[str, Any]:
    out = {"object": "webhook_endpoint"}
    out.update({k: row[k] for k in _ENDPOINT.split(", ") if not k.startswith(("secret", "previous_"))})
    if with_secret:
        out["secret"] = row["secret"]
    return out


def delivery_api(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"object": "webhook_delivery", **row}
    if out["status"] != "pending":
        out["next_attempt_at"] = None
    return out


async def insert_endpoint(conn: asyncpg.Connection, values: dict[str, Any]) -> dict[str, Any]:
    cols = list(values)
    row = await conn.fetchrow(
        f"INSERT INTO webhook_endpoints ({', '.join(cols)}) "
        f"VALUES ({', '.join(f'${i + 1}' for i in range(len(cols)))}) RETURNING {_ENDPOINT}",
        *values.values(),
    )
    return dict(row)


async def get_endpoint(
    conn: asyncpg.Connection | asyncpg.Pool, ws: uuid.UUID, eid: uuid.UUID
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE workspace_id = $1 AND id = $2", ws, eid
    )
    return dict(row) if row else None


async def update_endpoint(
    conn: asyncpg.Connection, ws: uuid.UUID, eid: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any] | None:
    sets = [f"{k} = ${i + 3}" for i, k in enumerate(changes)]
    sets += ["version = version + 1", "updated_at = now()"]
    row = await conn.fetchrow(
        f"UPDATE webhook_endpoints SET {', '.join(sets)} "
        f"WHERE workspace_id = $1 AND id = $2 RETURNING {_ENDPOINT}",
        ws,
        eid,
        *changes.values(),
    )
    return dict(row) if row else None


async def delete_endpoint(conn: asyncpg.Connection, ws: uuid.UUID, eid: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"DELETE FROM webhook_endpoints WHERE workspace_id = $1 AND id = $2 RETURNING {_ENDPOINT}", ws, eid
    )
    return dict(row) if row else None


async def list_endpoints(
    conn: asyncpg.Connection | asyncpg.Pool,
    ws: uuid.UUID,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    cond = "AND (created_at, id) > ($2, $3)" if after else "AND $2::timestamptz IS NULL AND $3::uuid IS NULL"
    rows = await conn.fetch(
        f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE workspace_id = $1 {cond} "
        f"ORDER BY created_at, id LIMIT {int(limit) + 1}",
        ws,
        after[0] if after else None,
        after[1] if after else None,
    )
    return [dict(r) for r in rows]


async def list_deliveries(
    conn: asyncpg.Connection | asyncpg.Pool,
    ws: uuid.UUID,
    eid: uuid.UUID,
    status: str | None,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {_DELIVERY} FROM webhook_deliveries WHERE workspace_id = $1 AND endpoint_id = $2 "
        "AND ($3::text IS NULL OR status = $3) AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5)) "
        f"ORDER BY created_at DESC, id DESC LIMIT {int(limit) + 1}",
        ws,
        eid,
        status,
        after[0] if after else None,
        after[1] if after else None,
    )
    return [dict(r) for r in rows]


_ATTEMPT = ("attempted_at", "status_code", "latency_ms", "error", "response_body")
_GET_DELIVERY = (
    "SELECT "
    + ", ".join(f"d.{c.strip()}" for c in _DELIVERY.split(","))
    + ", "
    + ", ".join(f"a.{c} AS a_{c}" for c in _ATTEMPT)
    + " FROM webhook_deliveries AS d LEFT JOIN webhook_attempts AS a"
    " ON a.workspace_id = d.workspace_id AND a.delivery_id = d.id"
    " WHERE d.workspace_id = $1 AND d.id = $2 ORDER BY a.attempted_at"
)


async def get_delivery(
    conn: asyncpg.Connection | asyncpg.Pool, ws: uuid.UUID, did: uuid.UUID
) -> dict[str, Any] | None:
    # One statement, so the delivery and its attempts come from one snapshot: read in two, an attempt
    # recorded in between showed up beside a delivery row that did not yet know of it.
    rows = await conn.fetch(_GET_DELIVERY, ws, did)
    if not rows:
        return None
    delivery = {k: v for k, v in dict(rows[0]).items() if not k.startswith("a_")}
    attempts = [{c: r[f"a_{c}"] for c in _ATTEMPT} for r in rows if r["a_attempted_at"] is not None]
    return {**delivery, "attempt_log": attempts}


async def requeue(conn: asyncpg.Connection, ws: uuid.UUID, did: uuid.UUID) -> bool:
    status = await conn.execute(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), leased_until = NULL "
        "WHERE workspace_id = $1 AND id = $2",
        ws,
        did,
    )
    return bool(status.endswith(" 1"))


async def requeue_failed_since(
    conn: asyncpg.Connection, ws: uuid.UUID, eid: uuid.UUID, since: dt.datetime
) -> int:
    status = await conn.execute(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), leased_until = NULL "
        "WHERE workspace_id = $1 AND endpoint_id = $2 AND status = 'failed' AND created_at >= $3",
        ws,
        eid,
        since,
    )
    return int(status.split()[-1])
