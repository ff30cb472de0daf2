"""Scoring's SQL: a set of contacts rescored in two statements whatever the number of rules or contacts,
and a contact's score explained.

``rescore`` is the one way scores change: every live rule's points for the given contacts computed in one
statement (a ``UNION ALL`` branch per rule), which also brings ``score_contributions`` in line and reads the
contacts locked beside their new score; the contacts whose score moved are then written through the write
pipeline (``writes.apply``: a new version and a ``contact.score_changed`` event with its deliveries).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import (
    CTE,
    Integer,
    Select,
    and_,
    any_,
    cast,
    delete,
    exists,
    false,
    func,
    literal,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert

from .. import sql
from ..contacts.spec import CONTACTS
from ..events.emit import Actor, emit
from ..resources import writes
from ..resources.exprs import Params
from .spec import compile_filter

log = logging.getLogger("crm_api.scoring")
_IDS = ARRAY(UUID(as_uuid=True))
CAP = 1_000_000_000
"""An uncapped activity rule's points for one contact stop here (a score stays a 32-bit integer)."""


@dataclass(frozen=True)
class Branch:
    """One rule's ``(contact_id, rule_id, points)`` rows among the live contacts of ``live``."""

    key: Hashable
    build: Callable[[CTE], Select[Any]]


def _condition(params: Params, rule: dict[str, Any], condition: Any) -> Branch:
    rid, points = params.add(rule["id"], "uuid"), params.add(rule["points"], "bigint")

    def build(live: CTE) -> Select[Any]:
        c = sql.table("contacts")
        return select(
            c.c.id.label("contact_id"), rid.build().label("rule_id"), points.build().label("points")
        ).where(
            # the ids themselves, not the live CTE: a CTE is estimated at one row, which made this a
            # nested loop over it per matching contact
            c.c.workspace_id == sql.param("ws"),
            c.c.id == any_(sql.param("ids", _IDS)),
            c.c.archived_at.is_(None),
            condition.build(),
        )

    return Branch(("condition", rid.key, points.key, condition.key), build)


def _activity(params: Params, rule: dict[str, Any], flt: Any) -> Branch:
    activity = rule["activity"]
    rid = params.add(rule["id"], "uuid")
    per = params.add(abs(int(activity["points"])), "bigint")
    sign = params.add(1 if activity["points"] >= 0 else -1, "bigint")
    cap = params.add(min(activity.get("max_points") or CAP, CAP), "bigint")
    kind = params.add(activity["type"], "text")
    within = params.add(dt.timedelta(days=activity["within_days"]), "interval")

    def build(live: CTE) -> Select[Any]:
        a = sql.table("activities")
        # a function in FROM sees the rows before it (implicitly LATERAL)
        linked = func.unnest(a.c.contact_ids).table_valued("cid").render_derived(name="linked")
        points = func.least(func.count() * per.build(), cap.build()) * sign.build()
        where = [
            a.c.workspace_id == sql.param("ws"),
            a.c.contact_ids.overlap(sql.param("ids", _IDS)),  # the GIN index on contact_ids
            a.c.archived_at.is_(None),
            a.c.type == kind.build(),
            func.coalesce(a.c.occurred_at, a.c.created_at) >= func.now() - within.build(),
            linked.c.cid.in_(select(live.c.id)),
        ]
        if flt is not None:
            where.append(flt.build())
        return (
            select(linked.c.cid.label("contact_id"), rid.build().label("rule_id"), points.label("points"))
            .select_from(a.join(linked, true()))
            .where(*where)
            .group_by(linked.c.cid)
        )

    key = ("activity", rid.key, per.key, sign.key, cap.key, kind.key, within.key, flt.key if flt else None)
    return Branch(key, build)


async def compile_rules(
    conn: Any, ws: uuid.UUID, rules: Sequence[dict[str, Any]]
) -> tuple[Params, list[Branch]]:
    """The live rules as branches with their parameters. A rule whose filter no longer compiles (a custom
    field definition changed since it was saved) counts for nobody."""
    params = Params(ws=ws)
    known: dict[str, Any] = {}
    branches: list[Branch] = []
    for rule in rules:
        try:
            if rule["condition"] is not None:
                condition = await compile_filter(
                    conn, ws, "contacts", rule["condition"], params, "/condition", known
                )
                branches.append(_condition(params, rule, condition))
            else:
                node = rule["activity"].get("filter")
                flt = None
                if node is not None:
                    flt = await compile_filter(
                        conn, ws, "activities", node, params, "/activity/filter", known
                    )
                branches.append(_activity(params, rule, flt))
        except Exception:  # a stale filter must not stop the other rules
            log.warning("scoring rule %s no longer compiles; it counts for nobody", rule["id"])
    return params, branches


def _statement(branches: Sequence[Branch]) -> Any:
    """Contributions replaced for the ``ids``, and those contacts read locked with their new score."""
    c, s = sql.table("contacts"), sql.table("score_contributions")
    ws, ids = sql.param("ws"), sql.param("ids", _IDS)
    # erased contacts are archived too; archived and merged contacts score nothing
    live = (
        select(c.c.id)
        .where(c.c.workspace_id == ws, c.c.id == any_(ids), c.c.archived_at.is_(None))
        .cte("live")
    )
    parts = [b.build(live) for b in branches]
    if not parts:
        nothing: Select[Any] = select(  # type: ignore[assignment]
            cast(literal(None), UUID(as_uuid=True)).label("contact_id"),
            cast(literal(None), UUID(as_uuid=True)).label("rule_id"),
            cast(literal(None), Integer).label("points"),
        ).where(false())
        parts = [nothing]
    new = (parts[0] if len(parts) == 1 else union_all(*parts)).cte("new")
    points = cast(new.c.points, Integer)
    dropped = (
        delete(s)
        .where(
            s.c.workspace_id == ws,
            s.c.contact_id == any_(ids),
            ~exists().where(
                new.c.contact_id == s.c.contact_id, new.c.rule_id == s.c.rule_id, new.c.points != 0
            ),
        )
        .cte("dropped")
    )
    upsert = insert(s).from_select(
        ["workspace_id", "contact_id", "rule_id", "points"],
        select(ws, new.c.contact_id, new.c.rule_id, points).where(new.c.points != 0),
    )
    put = upsert.on_conflict_do_update(
        index_elements=["workspace_id", "contact_id", "rule_id"],
        set_={"points": upsert.excluded.points},
        where=s.c.points != upsert.excluded.points,
    ).cte("put")
    # summed once and joined (hashed), not a subquery per contact over the whole CTE
    sums = (
        select(new.c.contact_id, func.sum(new.c.points).label("total")).group_by(new.c.contact_id).cte("sums")
    )
    total = cast(func.coalesce(sums.c.total, 0), Integer)
    return (
        select(*sql.columns(CONTACTS.columns, c), total.label("new_score"))
        .select_from(c.outerjoin(sums, sums.c.contact_id == c.c.id))
        .where(c.c.workspace_id == ws, c.c.id == any_(ids))
        .order_by(c.c.id)
        .with_for_update(of=c)
        .add_cte(dropped, put)
    )


STATEMENTS = sql.Shapes(256)


def _events(actor: Actor, at: dt.datetime) -> writes.Events:
    def events(old: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
        previous = {"score": old["score"] if old else 0}
        event = emit(actor, "contact.score_changed", "contact", new["id"], CONTACTS.to_api(new), previous, at)
        event["data"]["score"] = new["score"]
        return [event]

    return events


async def rescore(
    conn: asyncpg.Connection,
    actor: Actor,
    params: Params,
    branches: Sequence[Branch],
    ids: Sequence[uuid.UUID],
) -> int:
    """Rescore the contacts ``ids`` in the caller's transaction; the number whose score changed."""
    if not ids:
        return 0
    key = ("rescore", tuple(b.key for b in branches))
    statement = STATEMENTS.get(key, lambda: _statement(branches))
    rows = await statement.fetch(conn, **params.values, ids=sorted(set(ids)))
    changes: list[writes.Change] = []
    for r in rows:
        row = dict(r)
        score = row.pop("new_score")
        if row["score"] != score:
            changes.append((row, {"score": score}))
    if not changes:
        return 0
    at = dt.datetime.now(dt.UTC)
    applied = await writes.apply(
        conn, CONTACTS, actor, changes, None, at=at, rules=False, events=_events(actor, at)
    )
    return len(applied.written)


def _explained() -> Select[Any]:
    s, r = sql.table("score_contributions"), sql.table("scoring_rules")
    return (
        select(s.c.rule_id, r.c.name, s.c.points)
        .join(r, and_(r.c.workspace_id == s.c.workspace_id, r.c.id == s.c.rule_id))
        .where(
            s.c.workspace_id == sql.param("ws"), s.c.contact_id == sql.param("contact_id", UUID(as_uuid=True))
        )
        .order_by(s.c.points.desc(), s.c.rule_id)
    )


_EXPLAINED = sql.Query(_explained)


async def contributions(conn: Any, ws: uuid.UUID, contact_id: uuid.UUID) -> list[dict[str, Any]]:
    return [dict(r) for r in await _EXPLAINED.fetch(conn, ws=ws, contact_id=contact_id)]
