"""Owners are members: a column a spec names in ``member_columns`` (``owner_id``, ``assignee_id``) must hold
an active, live member of the workspace whenever a write sets or changes it, and ``"me"`` there is the
member the API key acts for. One query per write, whatever the number of rows (``writes.apply`` calls it
with every row of a batch, an import chunk, an order or a merge).

A value a write leaves as it was is not judged again: deactivating a member who still owns records is
allowed, and those records stay writable. Nor is a value a writer carries over from another record that
held it (``carried``: a merge filling its survivor with a merged record's owner): only a value a client
sets is a new choice of member.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

import asyncpg
from sqlalchemy import Select, any_, select
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from .. import sql
from ..errors import CRMError, FieldError, Unprocessable
from ..events.emit import Actor
from .spec import Pair, ResourceSpec

ME = "me"
"""The owner value that names the member the request's API key acts for."""


def _active_members() -> Select[Any]:
    m = sql.table("members")
    return select(m.c.id).where(
        m.c.workspace_id == sql.param("ws"),
        m.c.id == any_(sql.param("ids", ARRAY(UUID))),
        m.c.active.is_(True),
        m.c.archived_at.is_(None),
    )


_ACTIVE = sql.Query(_active_members)


def acting_member(ctx: Actor) -> uuid.UUID | None:
    member: uuid.UUID | None = getattr(ctx.principal, "member_id", None)
    return member


async def active_members(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    if not ids:
        return set()
    return {r["id"] for r in await _ACTIVE.fetch(conn, ws=workspace_id, ids=list(set(ids)))}


async def check(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Actor,
    pairs: Sequence[Pair],
    carried: Collection[str] = (),
) -> dict[int, CRMError]:
    """Resolve ``"me"`` in each new row (in place) and refuse, by pair index, a member column set to an id
    that is no active member; the ``carried`` columns are not judged."""
    failures: dict[int, CRMError] = {}
    judged: list[tuple[int, str, uuid.UUID]] = []
    for i, (old, new) in enumerate(pairs):
        for column in spec.member_columns:
            value = new.get(column)
            if value == ME:
                member = acting_member(ctx)
                if member is None:
                    failures.setdefault(
                        i, _refused(column, 'the API key acts for no member, so "me" names nobody')
                    )
                    continue
                new[column] = value = member
            if value is None or column in carried or (old is not None and old.get(column) == value):
                continue
            judged.append((i, column, value))
    found = await active_members(conn, ctx.workspace_id, [v for _, _, v in judged])
    for i, column, value in judged:
        if value not in found:
            failures.setdefault(i, _refused(column, "no active member of the workspace has this id"))
    return failures


def _refused(column: str, why: str) -> CRMError:
    return Unprocessable(f"{column}: not an active member", [FieldError(f"/{column}", why)])
