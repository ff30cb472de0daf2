"""Rules for webhook endpoints: URL checks (SSRF guard), secrets and their rotation, test sends, retries."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from ..auth import Context
from ..errors import NotFound, PreconditionFailed
from ..events.emit import emit
from ..events.store import insert_test_event
from ..events.types import BY_TYPE
from ..ids import uuid7
from ..masterkey import Keyring, is_sealed
from ..models.webhooks import DISABLED_REQUESTED
from . import netguard
from . import repository as repo
from .matching import subscribed
from .outbox import PARK, UNPARK
from .signing import new_secret

ROTATION_OVERLAP = dt.timedelta(hours=24)


# webhook.test goes to the endpoint under test only, whatever the others subscribe to
_FANNED_OUT = tuple(t for t in BY_TYPE if t != "webhook.test")


async def overlaps(conn: asyncpg.Connection, ctx: Context, endpoint: dict[str, Any]) -> list[dict[str, Any]]:
    """Other endpoints sending some of the same event types to the same URL: allowed (two consumers
    behind one URL may both want them) but each such event then arrives there twice, so the answer says so."""
    out = []
    for other in await repo.endpoints_with_url(conn, ctx.workspace_id, endpoint["url"]):
        if other["id"] == endpoint["id"]:
            continue
        both = [
            t
            for t in _FANNED_OUT
            if subscribed(endpoint["event_types"], t) and subscribed(other["event_types"], t)
        ]
        if both:
            message = (
                f"webhook endpoint {other['id']} ({other['status']}) already sends {len(both)} of these "
                "event types to this URL: each such event reaches it once per endpoint"
            )
            out.append(
                {
                    "code": "overlapping_subscription",
                    "message": message,
                    "endpoint_id": other["id"],
                    "event_types": both,
                }
            )
    return out


async def create(
    conn: asyncpg.Connection,
    ctx: Context,
    body: dict[str, Any],
    allow: list[netguard.Network],
    keyring: Keyring,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The new endpoint, with its secret in the clear (the one time the API shows it: the row holds it
    sealed), and warnings about it."""
    await netguard.validate_for_save(body["url"], allow)
    now = dt.datetime.now(dt.UTC)
    secret = new_secret()
    row = await repo.insert_endpoint(
        conn,
        {
            "workspace_id": ctx.workspace_id,
            "id": uuid7(),
            "url": body["url"],
            "description": body.get("description"),
            "event_types": sorted(set(body["event_types"])),
            "ordering": body.get("ordering", "none"),
            "secret": keyring.seal(secret),
            "created_at": now,
            "updated_at": now,
        },
    )
    return {**row, "secret": secret}, await overlaps(conn, ctx, row)


async def get(conn: asyncpg.Connection | asyncpg.Pool, ctx: Context, eid: uuid.UUID) -> dict[str, Any]:
    row = await repo.get_endpoint(conn, ctx.workspace_id, eid)
    if row is None:
        raise NotFound(f"No webhook endpoint with id {eid}")
    return row


async def _check_version(
    conn: asyncpg.Connection, ctx: Context, eid: uuid.UUID, if_match: int | None
) -> None:
    """With ``If-Match``: 412 unless the endpoint is still at that version, the row locked until the write
    that follows commits. The dispatcher raises the version when it disables an endpoint, so a version read
    before a disable no longer passes."""
    if if_match is None:
        return
    version = await repo.lock_endpoint(conn, ctx.workspace_id, eid)
    if version is None:
        raise NotFound(f"No webhook endpoint with id {eid}")
    if version != if_match:
        raise PreconditionFailed(f"The webhook endpoint is at version {version}, not {if_match}")


async def update(
    conn: asyncpg.Connection,
    ctx: Context,
    eid: uuid.UUID,
    changes: dict[str, Any],
    allow: list[netguard.Network],
    if_match: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The endpoint as changed, and warnings about a changed URL or event types."""
    changes = {k: v for k, v in changes.items() if v is not None or k == "description"}
    if "url" in changes:
        await netguard.validate_for_save(changes["url"], allow)
    # after the URL's lookup: the row lock is held from here to the commit, and the dispatcher's batched
    # outcomes for this endpoint wait on it
    await _check_version(conn, ctx, eid, if_match)
    if "event_types" in changes:
        changes["event_types"] = sorted(set(changes["event_types"]))
    # a disable asked is a disable on request, also of an endpoint the dispatcher disabled (for failing it
    # still receives, parked; on request it receives nothing)
    if changes.get("status") == "disabled":
        changes["disabled_reason"] = DISABLED_REQUESTED
    # a value the endpoint already has is no change: a PATCH repeating the state moves no version (and
    # enabling an enabled endpoint leaves its failure clock alone)
    current = await get(conn, ctx, eid)
    changes = {k: v for k, v in changes.items() if current[k] != v}
    if not changes:
        return current, []
    if changes.get("status") == "enabled":
        changes.update(disabled_reason=None, failing_since=None)
    row = await repo.update_endpoint(conn, ctx.workspace_id, eid, changes)
    if row is None:
        raise NotFound(f"No webhook endpoint with id {eid}")
    if changes.get("status") == "enabled":
        await UNPARK.execute(conn, ws=ctx.workspace_id, endpoint_id=eid)  # its backlog flows again
    elif changes.get("disabled_reason") == DISABLED_REQUESTED:
        await PARK.execute(conn, ws=ctx.workspace_id, endpoint_ids=[eid])
    subscription_changed = "url" in changes or "event_types" in changes
    return row, await overlaps(conn, ctx, row) if subscription_changed else []


async def delete(
    conn: asyncpg.Connection, ctx: Context, eid: uuid.UUID, if_match: int | None = None
) -> dict[str, Any]:
    await _check_version(conn, ctx, eid, if_match)
    row = await repo.delete_endpoint(conn, ctx.workspace_id, eid)
    if row is None:
        raise NotFound(f"No webhook endpoint with id {eid}")
    return row


async def rotate_secret(
    conn: asyncpg.Connection, ctx: Context, eid: uuid.UUID, keyring: Keyring, if_match: int | None = None
) -> dict[str, Any]:
    """A new secret (returned in the clear, stored sealed); the old one signs beside it for 24 hours."""
    await _check_version(conn, ctx, eid, if_match)
    current = await get(conn, ctx, eid)
    secret = new_secret()
    previous = current["secret"]
    changes = {
        "secret": keyring.seal(secret),
        "previous_secret": previous if is_sealed(previous) else keyring.seal(previous),
        "previous_secret_expires_at": dt.datetime.now(dt.UTC) + ROTATION_OVERLAP,
    }
    row = await repo.update_endpoint(conn, ctx.workspace_id, eid, changes)
    assert row is not None
    return {**row, "secret": secret}


async def send_test(conn: asyncpg.Connection, ctx: Context, eid: uuid.UUID) -> dict[str, Any]:
    endpoint = await get(conn, ctx, eid)
    now = dt.datetime.now(dt.UTC)
    obj = repo.endpoint_api(endpoint)
    event = emit(ctx, "webhook.test", "webhook_endpoint", eid, obj, {}, now)
    did = await insert_test_event(conn, ctx.workspace_id, eid, event)
    delivery = await repo.get_delivery(conn, ctx.workspace_id, did)
    assert delivery is not None
    return delivery


async def get_delivery(
    conn: asyncpg.Connection | asyncpg.Pool, ctx: Context, did: uuid.UUID
) -> dict[str, Any]:
    row = await repo.get_delivery(conn, ctx.workspace_id, did)
    if row is None:
        raise NotFound(f"No webhook delivery with id {did}")
    return row


async def retry(conn: asyncpg.Connection, ctx: Context, did: uuid.UUID) -> dict[str, Any]:
    if not await repo.requeue(conn, ctx.workspace_id, did):
        raise NotFound(f"No webhook delivery with id {did}")
    return await get_delivery(conn, ctx, did)


async def recover(conn: asyncpg.Connection, ctx: Context, eid: uuid.UUID, since: dt.datetime) -> int:
    await get(conn, ctx, eid)
    return await repo.requeue_failed_since(conn, ctx.workspace_id, eid, since)
