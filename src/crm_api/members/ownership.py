"""What a member owns, counted per object type, and moving all of it to another member.

A move is set-based and batched: the owned records are read a chunk at a time (a range of each table's
``(workspace_id, owner, created_at, id)`` index) and each chunk goes through the one write
path, so every record moved gets its ``<object>.updated`` event and the new owner is checked like any other
write's.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
from sqlalchemy import DateTime, Select, Uuid, func, select, tuple_

from .. import sql
from ..activities.spec import ACTIVITIES
from ..auth import Context
from ..companies.spec import COMPANIES
from ..contacts.spec import CONTACTS
from ..deals.spec import DEALS
from ..errors import NotFound, field_error
from ..resources import owners, writes
from ..resources import repository as repo
from ..resources.spec import ResourceSpec
from ..tickets.spec import TICKETS
from .spec import MEMBERS

OWNED: tuple[ResourceSpec, ...] = (CONTACTS, COMPANIES, DEALS, ACTIVITIES, TICKETS)
"""Every resource with a member column, in the order counts are shown and moves are made."""
CHUNK = 500


def _column(spec: ResourceSpec) -> str:
    return spec.member_columns[0]


def _counts() -> Select[Any]:
    # one scalar subquery per table, each a count over its owner index
    counts = []
    for spec in OWNED:
        t = sql.table(spec.table)
        counts.append(
            select(func.count())
            .where(
                t.c.workspace_id == sql.param("ws"),
                t.c[_column(spec)] == sql.param("member"),
                t.c.archived_at.is_(None),
            )
            .scalar_subquery()
            .label(spec.name)
        )
    return select(*counts)


_COUNTS = sql.Query(_counts)


@sql.shape
def _owned_chunk(spec: ResourceSpec) -> Select[Any]:
    # walks the (workspace_id, owner, created_at, id) index in its own order: each chunk is an index range
    t = sql.table(spec.table)
    return (
        select(*sql.columns(spec.columns, t))
        .where(
            t.c.workspace_id == sql.param("ws"),
            t.c[_column(spec)] == sql.param("member"),
            t.c.archived_at.is_(None),
            tuple_(t.c.created_at, t.c.id)
            > tuple_(sql.param("after_at", DateTime(timezone=True)), sql.param("after", Uuid)),
        )
        .order_by(t.c.created_at, t.c.id)
        .limit(CHUNK)
        .with_for_update()
    )


async def _member(
    conn: asyncpg.Connection | asyncpg.Pool, ctx: Context, member_id: uuid.UUID
) -> dict[str, Any]:
    row = await repo.fetch_one(conn, MEMBERS, ctx.workspace_id, member_id)
    if row is None:
        raise NotFound(f"No member with id {member_id}")
    return row


async def counts(conn: asyncpg.Pool, ctx: Context, member_id: uuid.UUID) -> dict[str, Any]:
    await _member(conn, ctx, member_id)
    row = await _COUNTS.fetchrow(conn, ws=ctx.workspace_id, member=member_id)
    by_type = {spec.name: row[spec.name] for spec in OWNED}
    return {
        "object": "member_ownership",
        "member_id": member_id,
        "counts": by_type,
        "total": sum(by_type.values()),
    }


async def reassign(
    conn: asyncpg.Connection, ctx: Context, member_id: uuid.UUID, to: uuid.UUID
) -> dict[str, Any]:
    """Move every live record ``member_id`` owns to ``to``, chunk by chunk through the write path, in the
    request's transaction (all or nothing)."""
    await _member(conn, ctx, member_id)
    if to == member_id:
        raise field_error("/to_member_id", "is the member whose records are moved")
    if not await owners.active_members(conn, ctx.workspace_id, [to]):
        raise field_error("/to_member_id", "no active member of the workspace has this id")
    moved: dict[str, int] = {}
    for spec in OWNED:
        column, count = _column(spec), 0
        after_at, after = dt.datetime.min.replace(tzinfo=dt.UTC), uuid.UUID(int=0)
        while True:
            rows = [
                dict(r)
                for r in await _owned_chunk(spec).fetch(
                    conn, ws=ctx.workspace_id, member=member_id, after_at=after_at, after=after
                )
            ]
            if not rows:
                break
            done = await writes.apply(conn, spec, ctx, [(row, {column: to}) for row in rows], "updated")
            done.raise_first()  # all or nothing: a refused record refuses the move
            count += len(done.written)
            after_at, after = rows[-1]["created_at"], rows[-1]["id"]
        moved[spec.name] = count
    return {
        "object": "member_reassignment",
        "member_id": member_id,
        "to_member_id": to,
        "moved": moved,
        "total": sum(moved.values()),
    }
