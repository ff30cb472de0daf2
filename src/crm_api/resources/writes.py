"""The write pipeline: every change to a spec-described resource goes through ``apply``, whoever writes it
(the routes, batches and upserts, a stage removal's deal moves, orders, merges, ticket comments, the SLA
breach job), so no writer can skip a rule, an event or the upkeep a change implies.

``apply`` takes changes ``(row as it is, or None for a new object; the fields to set)`` and runs, in order:

1. normalise: ``spec.normalise`` on the fields (idempotent: callers that look a natural key up first have
   already run it on their payload).
2. build: a new row (defaults, system columns, a fresh id) or the current row with the fields merged in (a
   null takes the field's default).
3. custom fields: the values checked against the workspace's definitions (``custom_fields.enforce``);
   owners: a member column set or changed must name an active member, ``"me"`` the key's
   (``owners.check``).
4. prepare: ``spec.prepare``, the spec's database-backed rules (a deal's status from its stage).
5. finalise: ``spec.finalise`` and ``search_text``, derived from the change alone.
6. admit: the writer's own check of each row, in order (a batch refuses clashes between its items).
7. version: a changed row gets the next version and ``updated_at``; an unchanged one is not written and
   has no event.
8. events: ``<object>.<action>`` and the spec's derived events (``deal.won``), then the writer's own.
9. the one statement (``repository.write``): the rows, their events, the webhook deliveries and the
   external-id registry, in one round trip for one row or five hundred.
10. after_write: ``spec.after_write`` with the changes written, in the write's transaction (a contact's
    lifetime value when a deal is won).

A refusal at 3, 4 or 6 is returned by the change's index, and that change goes no further. Steps 3 and 4 are
the rules that judge what clients write; upkeep the system does on its own (a contact's lifetime value,
SLA markers, a merge's relinks, a ticket's first response) passes ``rules=False``: it sets only derived
columns or links, and the rules would refuse it on records they lock (an erased contact keeps its lifetime
value up to date). Every other step, after_write included, runs for every writer.

Schema validation and the reference checks of a client's payload (``service.check_references``) come
before ``apply``: they judge the request, and their errors name its fields.

A write and its upkeep share a transaction: the request's when there is one, else one opened here only for
specs with an ``after_write`` that has work for the changes (``upkeep_needed``). A plain write is the one
statement, with no BEGIN/COMMIT round trips.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from .. import idempotency
from ..errors import CRMError
from ..events.emit import Actor, emit
from ..ids import uuid7
from ..textsearch import fold
from . import owners
from . import repository as repo
from .custom_fields import enforce as custom_fields
from .spec import ResourceSpec

Row = dict[str, Any]
Change = tuple[Row | None, dict[str, Any]]
"""(the row as it is, or None for a new object; the fields to set: a create's payload, an update's changes)"""
Action = str | Callable[[Row | None, Row], str | None] | None
"""The change's own event: ``"updated"`` becomes ``<object>.updated`` (with the derived events), a callable
picks it per change, None emits none (the writer gives its own)."""
Events = Callable[[Row | None, Row], list[dict[str, Any]]]
"""The writer's own events for a change about to be written (``emit`` rows), after the change's own."""
Admit = Callable[[int, Row | None, Row], CRMError | None]
"""The writer's check of a finished row, called in change order; an error refuses the change."""


@dataclass(slots=True)
class Applied:
    """What became of each change, by its index in the list given to ``apply``."""

    rows: dict[int, Row] = field(default_factory=dict)
    """The row each change that passed the rules leaves: its new version, or the row as it was."""
    failures: dict[int, CRMError] = field(default_factory=dict)
    """Changes refused by a rule or by the writer's check; not written."""
    changed: list[int] = field(default_factory=list)
    """Changes that had something to write (a new object, or a new version), in order."""
    changed_set: set[int] = field(default_factory=set)
    """``changed`` as a set: asked once per change, a list's ``in`` made a batch's results quadratic."""
    written: set[uuid.UUID] = field(default_factory=set)
    """Ids the statement wrote. A changed row missing here lost a race: its insert hit a unique key, or its
    version moved since it was read (and it has no event)."""
    wrote: bool = False
    """Whether the statement ran (not for a dry run, nor when nothing changed)."""

    def lost(self, index: int) -> bool:
        """The change had something to write, and the statement did not write it."""
        return self.wrote and index in self.changed_set and self.rows[index]["id"] not in self.written

    def raise_first(self) -> None:
        """For a writer of one change (or all-or-nothing): its failure as the error to answer with."""
        if self.failures:
            raise self.failures[min(self.failures)]


async def apply(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Actor,
    changes: Sequence[Change],
    action: Action,
    *,
    at: dt.datetime | None = None,
    rules: bool = True,
    admit: Admit | None = None,
    events: Events | None = None,
    always: bool = False,
    dry_run: bool = False,
    carried: Collection[str] = (),
    actor_of: Callable[[int], Actor] | None = None,
) -> Applied:
    """Run the changes through the pipeline (see the module's docstring) and write them in one statement.

    ``at`` stamps the new versions (now by default); ``always`` writes a new version even when no column
    changed (a merge's survivor: the merge itself is its change); ``dry_run`` stops before the statement and
    reports what would be written; ``carried`` names member columns whose value the writer carries over
    from another record that held it (a merge's fill), which the owners' rule does not judge; ``actor_of``
    gives a change's own actor for its events, by index (a batch of automation runs, each its run's), where
    ``ctx`` is the actor of them all."""
    at = at or dt.datetime.now(dt.UTC)
    result = Applied()

    # 1-2: normalise, build
    pairs: list[tuple[Row | None, Row]] = []
    for old, fields in changes:
        fields = spec.normalise(fields)
        new = _merged(spec, old, fields) if old is not None else _new(spec, ctx, fields, at)
        pairs.append((old, new))

    # 3-4: the rules, for every change at once (one query per rule, whatever the number of rows)
    if rules and pairs:
        result.failures = await custom_fields.check(conn, spec, ctx, pairs)
        if spec.member_columns:
            for i, error in (await owners.check(conn, spec, ctx, pairs, carried)).items():
                result.failures.setdefault(i, error)
        if spec.prepare is not None:
            for i, error in (await spec.prepare(conn, ctx, pairs)).items():
                result.failures.setdefault(i, error)

    inserts: list[Row] = []
    updates: list[Row] = []
    emitted: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    added: list[dict[str, Any]] = []
    for i, (old, new) in enumerate(pairs):
        if i in result.failures:
            continue
        # 5: finalise
        if spec.finalise is not None:
            spec.finalise(old, new)
        new["search_text"] = fold(spec.search_text(new))  # as textsearch.query_text folds a query
        # 6: admit
        if admit is not None and (refused := admit(i, old, new)) is not None:
            result.failures[i] = refused
            continue
        result.rows[i] = new
        # 7: version
        if old is not None:
            if new == old and not always:
                result.rows[i] = old
                continue
            new["version"] = old["version"] + 1
            new["updated_at"] = at
            updates.append(new)
        else:
            inserts.append(new)
        result.changed.append(i)
        result.changed_set.add(i)
        # 8: events, and the external-id registry's changes
        name = action(old, new) if callable(action) else action
        if name is not None:
            emitted += _events_for(spec, actor_of(i) if actor_of else ctx, old, new, name, at)
        if events is not None:
            emitted += events(old, new)
        gone, taken = _external_changes(old, new)
        removed += gone
        added += taken

    if dry_run or not result.changed:
        return result
    # 9-10: the statement, then the upkeep, together
    result.wrote = True
    # a one-object write answering a folded Idempotency-Key stores its record in the same statement
    record = idempotency.pending(spec) if len(result.changed) == 1 else None
    response = None
    if record is not None and record.render is not None:
        response = record.render(pairs[result.changed[0]][1])
    upkeep = spec.after_write is not None and (
        spec.upkeep_needed is None or spec.upkeep_needed([pairs[i] for i in result.changed])
    )
    async with _scope(conn, upkeep):
        result.written = await repo.write(
            conn,
            spec,
            ctx.workspace_id,
            inserts=inserts,
            updates=updates,
            events=emitted,
            external_removed=removed,
            external_added=added,
            record=record,
            response=response,
        )
        done = [pairs[i] for i in result.changed if pairs[i][1]["id"] in result.written]
        if upkeep and done and spec.after_write is not None:
            await spec.after_write(conn, ctx, done)
    return result


def _scope(conn: asyncpg.Connection, upkeep: bool) -> AbstractAsyncContextManager[Any]:
    """A transaction when upkeep follows the write and the caller has none open, so the two commit
    together; a plain write is one statement and needs none."""
    if upkeep and not conn.is_in_transaction():
        scope: AbstractAsyncContextManager[Any] = conn.transaction()
        return scope
    return nullcontext()


def _new(spec: ResourceSpec, ctx: Actor, fields: dict[str, Any], at: dt.datetime) -> Row:
    row: Row = dict.fromkeys(spec.columns)
    row.update(spec.defaults)
    row.update({k: v for k, v in fields.items() if v is not None or k not in spec.defaults})
    row.update(workspace_id=ctx.workspace_id, id=uuid7(), created_at=at, updated_at=at, version=1)
    row["archived_at"] = None
    return row


def _merged(spec: ResourceSpec, row: Row, fields: dict[str, Any]) -> Row:
    new = dict(row)
    for key, value in fields.items():
        new[key] = spec.defaults.get(key) if value is None and key in spec.defaults else value
    return new


def _events_for(
    spec: ResourceSpec, ctx: Actor, old: Row | None, new: Row, action: str, at: dt.datetime
) -> list[dict[str, Any]]:
    """The change's own event plus those its spec derives (``deal.stage_changed``), one snapshot for all."""
    obj = spec.to_api(new)
    previous = (
        {k: old[k] for k in (*spec.field_names, "archived_at") if old[k] != new[k]} if old is not None else {}
    )
    actions = [action, *(spec.derived_events(old, new) if spec.derived_events else ())]
    return [emit(ctx, f"{spec.object}.{a}", spec.object, new["id"], obj, previous, at) for a in actions]


def _external_pairs(row: Row) -> set[tuple[str, str]]:
    return {(k, str(v)) for k, v in (row.get("external_ids") or {}).items()}


def _external_changes(old: Row | None, new: Row) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    before = _external_pairs(old) if old else set()
    after = _external_pairs(new)
    oid = new["id"]
    removed = [{"object_id": oid, "source": s, "external_id": e} for s, e in before - after]
    added = [{"object_id": oid, "source": s, "external_id": e} for s, e in after - before]
    return removed, added
