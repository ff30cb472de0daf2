"""Scores kept current by the ``crm-api worker`` processes, with the segment workers' machinery and
freshness (``CRM_SEGMENT_POLL_SECONDS``):

- *Follow.* Per workspace with rules, a transaction claims the workspace's ``scoring_cursors`` row
  (``FOR UPDATE SKIP LOCKED``: one worker per workspace at a time, the others move on), reads up to 2,000
  events after it and up to the feed's bound, and rescores the contacts they touched: the contacts
  themselves (a merge's merged ones too), the contacts of a touched company when a condition goes through
  ``company.``, and the contacts an activity links or unlinks. Two statements per 2,000 contacts, whatever
  the number of rules.
- *Walk.* A rule created, changed, archived or restored is ``building``: the workspace's contacts are
  rescored in chunks of ``CHUNK`` in id order, one transaction each, the position kept in the cursor row
  (resumable: a worker killed mid-walk leaves it where the last chunk committed). At the end, the rules
  the walk started for are ``ready`` unless they changed again meanwhile (then another walk follows).
- *Time.* Every ``CRM_SEGMENT_RELATIVE_SECONDS``, a workspace with a condition holding a relative time
  starts a walk (anyone may enter or leave); one with activity rules only rescores the contacts holding
  their points, in chunks (time passing only takes activities out of ``within_days``).

The follow and the walk of a workspace hold the same row lock, so they never rescore at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, Select, any_, cast, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, insert

from .. import db, sql
from ..auth import SystemContext
from ..config import Settings
from ..events import horizon
from ..segments.worker import has_relative_time
from . import repository as repo
from .spec import SCORING_RULES

log = logging.getLogger("crm_api.scoring")
_IDS = ARRAY(UUID(as_uuid=True))
BATCH = 2000
"""Events read per workspace per step, and contacts rescored per statement."""
CHUNK = 2000
"""Contacts a walk rescores per transaction."""
OWN = "contact.score_changed"
"""The scoring's own events: they touch nothing it has not just computed."""


def _workspaces() -> Select[Any]:
    r = sql.table("scoring_rules")
    return select(r.c.workspace_id).where(or_(r.c.archived_at.is_(None), r.c.status == "building")).distinct()


def _start_cursor() -> Any:
    """A workspace's first cursor: just before its first ``scoring_rule.created`` still held (a walk reads
    the state earlier events left), or its oldest event."""
    e, c = sql.table("events"), sql.table("scoring_cursors")
    ws = sql.param("ws")
    first = select(func.min(e.c.sequence)).where(e.c.workspace_id == ws, e.c.type == "scoring_rule.created")
    oldest = select(func.min(e.c.sequence)).where(e.c.workspace_id == ws)
    start = func.coalesce(first.scalar_subquery(), oldest.scalar_subquery(), sql.const(1)) - sql.const(1)
    return insert(c).from_select(["workspace_id", "sequence"], select(ws, start)).on_conflict_do_nothing()


def _claim() -> Select[Any]:
    c = sql.table("scoring_cursors")
    return (
        select(c.c.sequence, c.c.walk_after, c.c.walk_versions)
        .where(c.c.workspace_id == sql.param("ws"))
        .with_for_update(skip_locked=True)
    )


def _events() -> Select[Any]:
    e = sql.table("events")
    data = e.c.data
    return (
        select(
            e.c.sequence,
            e.c.type,
            e.c.object_type,
            e.c.object_id,
            data["merged"].label("merged"),
            data["object"]["contact_ids"].label("linked"),
            data["previous"]["contact_ids"].label("unlinked"),
        )
        .where(
            e.c.workspace_id == sql.param("ws"),
            e.c.sequence > sql.param("after", BigInteger),
            e.c.sequence <= sql.param("bound", BigInteger),
        )
        .order_by(e.c.sequence)
        .limit(sql.const(BATCH))
    )


def _advance() -> Any:
    c = sql.table("scoring_cursors")
    return (
        update(c)
        .where(c.c.workspace_id == sql.param("ws"))
        .values(sequence=sql.param("sequence", BigInteger))
    )


def _walk_set() -> Any:
    c = sql.table("scoring_cursors")
    return (
        update(c)
        .where(c.c.workspace_id == sql.param("ws"))
        .values(walk_after=sql.param("after", UUID(as_uuid=True)), walk_versions=sql.param("versions", JSONB))
    )


def _live_rules() -> Select[Any]:
    r = sql.table("scoring_rules")
    return (
        select(*sql.columns(SCORING_RULES.columns, r))
        .where(r.c.workspace_id == sql.param("ws"), r.c.archived_at.is_(None))
        .order_by(r.c.id)
    )


def _building() -> Select[Any]:
    r = sql.table("scoring_rules")
    return select(r.c.id, r.c.version).where(r.c.workspace_id == sql.param("ws"), r.c.status == "building")


def _ready() -> Any:
    """The rules a walk started for, unless they changed since."""
    r = sql.table("scoring_rules")
    walked = func.jsonb_each_text(sql.param("versions", JSONB)).table_valued("key", "value").render_derived()
    return (
        update(r)
        .where(
            r.c.workspace_id == sql.param("ws"),
            r.c.status == "building",
            r.c.id == cast(walked.c.key, UUID(as_uuid=True)),
            r.c.version == cast(walked.c.value, BigInteger),
        )
        .values(status="ready")
    )


def _chunk() -> Select[Any]:
    c = sql.table("contacts")
    return (
        select(c.c.id)
        .where(c.c.workspace_id == sql.param("ws"), c.c.id > sql.param("after", UUID(as_uuid=True)))
        .order_by(c.c.id)
        .limit(sql.param("limit"))
    )


def _company_contacts() -> Select[Any]:
    c = sql.table("contacts")
    return select(c.c.id).where(
        c.c.workspace_id == sql.param("ws"), c.c.company_id == any_(sql.param("ids", _IDS))
    )


def _timed() -> Select[Any]:
    r = sql.table("scoring_rules")
    return select(r.c.workspace_id, r.c.id, r.c.condition, r.c.activity).where(r.c.archived_at.is_(None))


def _holders() -> Select[Any]:
    """The next contacts holding points from the ``rules``, in id order (the rule index, range by range)."""
    s = sql.table("score_contributions")
    return (
        select(s.c.contact_id)
        .where(
            s.c.workspace_id == sql.param("ws"),
            s.c.rule_id == any_(sql.param("rules", _IDS)),
            s.c.contact_id > sql.param("after", UUID(as_uuid=True)),
        )
        .group_by(s.c.contact_id)
        .order_by(s.c.contact_id)
        .limit(sql.param("limit"))
    )


_WORKSPACES, _START, _CLAIM, _EVENTS = (
    sql.Query(_workspaces),
    sql.Query(_start_cursor),
    sql.Query(_claim),
    sql.Query(_events),
)
_ADVANCE, _WALK_SET, _RULES, _BUILDING = (
    sql.Query(_advance),
    sql.Query(_walk_set),
    sql.Query(_live_rules),
    sql.Query(_building),
)
_READY, _CHUNK, _COMPANY_CONTACTS, _TIMED, _HOLDERS = (
    sql.Query(_ready),
    sql.Query(_chunk),
    sql.Query(_company_contacts),
    sql.Query(_timed),
    sql.Query(_holders),
)
NIL = uuid.UUID(int=0)


def _uuids(value: Any) -> list[uuid.UUID]:
    return [uuid.UUID(i) for i in value] if isinstance(value, list) else []


async def _touched(
    conn: asyncpg.Connection, ws: uuid.UUID, events: Sequence[Any], rules: Sequence[dict[str, Any]]
) -> set[uuid.UUID]:
    """The contacts the events may have changed the score of."""
    contacts: set[uuid.UUID] = set()
    companies: set[uuid.UUID] = set()
    for e in events:
        if e["type"] == OWN:
            continue
        if e["object_type"] == "contact":
            contacts.add(e["object_id"])
            contacts.update(_uuids(e["merged"]))
        elif e["object_type"] == "company":
            companies.add(e["object_id"])
        elif e["object_type"] == "activity":
            contacts.update(_uuids(e["linked"]))
            contacts.update(_uuids(e["unlinked"]))
    through_company = any(r["condition"] is not None and _mentions_company(r["condition"]) for r in rules)
    if companies and through_company:
        rows = await _COMPANY_CONTACTS.fetch(conn, ws=ws, ids=list(companies))
        contacts.update(r["id"] for r in rows)
    return contacts


def _mentions_company(node: Any) -> bool:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("field"), str) and item["field"].startswith("company."):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


async def _rescore_all(
    conn: asyncpg.Connection, ws: uuid.UUID, rules: Sequence[dict[str, Any]], ids: Sequence[uuid.UUID]
) -> int:
    params, branches = await repo.compile_rules(conn, ws, rules)
    ordered = sorted(ids)
    changed = 0
    for start in range(0, len(ordered), BATCH):
        changed += await repo.rescore(
            conn, SystemContext(ws, "system:scoring"), params, branches, ordered[start : start + BATCH]
        )
    return changed


async def follow_workspace(pool: Any, ws: uuid.UUID, bound: int) -> int:
    """One step of a workspace's events; the number read (0: nothing new, or another worker has it)."""
    async with pool.acquire() as conn, conn.transaction():
        await _START.execute(conn, ws=ws)
        cursor = await _CLAIM.fetchrow(conn, ws=ws)
        if cursor is None or cursor["sequence"] >= bound:
            return 0
        events = await _EVENTS.fetch(conn, ws=ws, after=cursor["sequence"], bound=bound)
        if events:
            rules = [dict(r) for r in await _RULES.fetch(conn, ws=ws)]
            touched = await _touched(conn, ws, events, rules)
            if touched and rules:
                await _rescore_all(conn, ws, rules, list(touched))
        last = events[-1]["sequence"] if len(events) == BATCH else bound
        await _ADVANCE.execute(conn, ws=ws, sequence=last)
        return len(events)


async def walk_workspace(pool: Any, ws: uuid.UUID) -> int:
    """One chunk of a workspace's walk, starting one for its building rules if none is under way; the
    contacts rescored (0: no walk, or another worker holds the workspace)."""
    async with pool.acquire() as conn, conn.transaction():
        await _START.execute(conn, ws=ws)
        cursor = await _CLAIM.fetchrow(conn, ws=ws)
        if cursor is None:
            return 0
        versions = cursor["walk_versions"]
        after = cursor["walk_after"] or NIL
        if versions is None:
            building = await _BUILDING.fetch(conn, ws=ws)
            if not building:
                return 0
            versions, after = {str(r["id"]): r["version"] for r in building}, NIL
        ids = [r["id"] for r in await _CHUNK.fetch(conn, ws=ws, after=after, limit=CHUNK)]
        rules = [dict(r) for r in await _RULES.fetch(conn, ws=ws)]
        await _rescore_all(conn, ws, rules, ids)
        if len(ids) < CHUNK:  # the last chunk: the walk is over
            await _READY.execute(conn, ws=ws, versions=versions)
            await _WALK_SET.execute(conn, ws=ws, after=None, versions=None)
        else:
            await _WALK_SET.execute(conn, ws=ws, after=ids[-1], versions=versions)
        return max(len(ids), 1)


async def start_walks(pool: Any, workspaces: Sequence[uuid.UUID]) -> int:
    """Start a walk (making no rule ready) in each workspace that has none under way."""
    started = 0
    for ws in workspaces:
        async with pool.acquire() as conn, conn.transaction():
            await _START.execute(conn, ws=ws)
            cursor = await _CLAIM.fetchrow(conn, ws=ws)
            if cursor is None or cursor["walk_versions"] is not None:
                continue
            await _WALK_SET.execute(conn, ws=ws, after=None, versions={})
            started += 1
    return started


async def decay_workspace(pool: Any, ws: uuid.UUID, rules: Sequence[uuid.UUID]) -> int:
    """Rescore, chunk by chunk, the contacts holding points from the activity ``rules``; the contacts
    rescored. A chunk finding the workspace busy (a follow step, a walk) leaves the rest to the next pass."""
    after, done = NIL, 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if await _CLAIM.fetchrow(conn, ws=ws) is None:
                return done
            rows = await _HOLDERS.fetch(conn, ws=ws, rules=list(rules), after=after, limit=CHUNK)
            ids = [r["contact_id"] for r in rows]
            live = [dict(r) for r in await _RULES.fetch(conn, ws=ws)]
            await _rescore_all(conn, ws, live, ids)
        done += len(ids)
        if len(ids) < CHUNK:
            return done
        after = ids[-1]


async def time_once(pool: Any) -> int:
    """Bring up to date the scores that change with time alone: a walk in each workspace with a
    relative-time condition, the holders of activity points elsewhere; the workspaces seen to."""
    relative: set[uuid.UUID] = set()
    activity: dict[uuid.UUID, list[uuid.UUID]] = {}
    for r in await _TIMED.fetch(pool):
        if r["activity"] is not None:
            activity.setdefault(r["workspace_id"], []).append(r["id"])
        elif has_relative_time(r["condition"]):
            relative.add(r["workspace_id"])
    seen = await start_walks(pool, sorted(relative))
    for ws, rules in activity.items():
        if ws not in relative:
            await decay_workspace(pool, ws, rules)
            seen += 1
    return seen


async def follow_once(pool: Any) -> int:
    """One step of every workspace with rules; the events read."""
    workspaces = await _WORKSPACES.fetch(pool)
    if not workspaces:  # no rules anywhere: an idle worker costs one statement a poll
        return 0
    bound = await horizon.bound(pool)  # before any event is read, in a statement of its own (horizon.py)
    read = 0
    for row in workspaces:
        read += await follow_workspace(pool, row["workspace_id"], bound)
    return read


async def walk_once(pool: Any) -> int:
    """One chunk of every workspace's walk; the contacts rescored."""
    done = 0
    for row in await _WORKSPACES.fetch(pool):
        done += await walk_workspace(pool, row["workspace_id"])
    return done


async def run_forever(pool: Any, settings: Settings, stop: asyncio.Event) -> None:
    """Until ``stop``: follow, a chunk of each walk and (on its schedule) the time pass, again at once
    while busy. A follow step comes between two chunks, so a long walk does not hold scores back."""
    every = settings.segment_poll_seconds
    if every <= 0:
        return
    next_time = time.monotonic() + settings.segment_relative_seconds
    while not stop.is_set():
        busy = False
        try:
            busy = await follow_once(pool) > 0
            busy = await walk_once(pool) > 0 or busy
            if time.monotonic() >= next_time:
                next_time = time.monotonic() + settings.segment_relative_seconds
                await time_once(pool)
        except db.ERRORS as exc:
            log.warning("scoring job failed, retrying: %s", exc)
        except Exception:
            # a bug must not stop the loop for every workspace; nothing moved, so it is retried
            log.exception("scoring job failed")
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
