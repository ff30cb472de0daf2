"""``custom_fields`` on contacts, companies, deals and tickets checked against the workspace's definitions.

Called by ``resources.writes.apply``, which every write path goes through (create, update, upserts,
batches, deals moved off a removed stage, a merge's survivor), with all of a write's rows at once: one
query for the definitions (none when this process's cache holds them, see ``cache.py``, or when no row
sets a value), one for unique values.

Rules, per key whose value the write changes (unchanged keys are left alone, so data written before a
definition existed, or under one since archived, never blocks an unrelated update):
- a live definition: the value must fit its type; it is stored normalised (see ``values``);
- an archived definition: read-only, 422; no definition: unknown key, 422;
- ``null`` removes the key.
A live required field must be present on create, and cannot be removed once set. A unique field's value
must not be held by another live record: checked here for a per-item 409, and by a trigger (migration
0010) under an advisory lock, which is what holds against concurrent writers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy import Select, and_, column, func, select
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from ... import sql
from ...errors import Conflict, CRMError, FieldError, Unprocessable
from ...models.custom_fields import OBJECT_TYPES
from ..spec import Pair, ResourceSpec
from . import values
from .cache import CACHE, Definitions

STRICT_WITHOUT_DEFINITIONS = False
"""An object type with no definitions at all (live or archived) keeps free-form ``custom_fields``, so
workspaces (and integrations) that predate definitions keep working; the first definition makes the
object type strict."""

"""name -> definition; a live definition wins over archived ones of the same name."""


def applies(spec: ResourceSpec) -> bool:
    return spec.object in OBJECT_TYPES and "custom_fields" in spec.field_names


def _definitions() -> Select[Any]:
    cf = sql.table("custom_fields")
    return (
        select(cf.c.name, cf.c.type, cf.c.required, cf.c.is_unique, cf.c.options, cf.c.archived_at)
        .where(cf.c.workspace_id == sql.param("ws"), cf.c.object_type == sql.param("object_type"))
        .order_by(cf.c.archived_at.is_(None), cf.c.created_at)
    )


# on every write path of a resource with custom fields: built and compiled once
_DEFINITIONS = sql.Query(_definitions)


@sql.shape
def _holders(table: str) -> Select[Any]:
    """The live records of ``table`` holding each of ``probes`` (``{key: value}``); ``n`` numbers the probes
    from 1. Containment against the GIN (jsonb_path_ops) index, one probe per wanted value."""
    t = sql.table(table).alias("t")
    p = (
        func.unnest(sql.param("probes", ARRAY(JSONB)))
        .table_valued(column("probe", JSONB), with_ordinality="n")
        .render_derived(name="p")
    )
    on = and_(
        t.c.workspace_id == sql.param("ws"), t.c.archived_at.is_(None), t.c.custom_fields.contains(p.c.probe)
    )
    return select(p.c.n, t.c.id).select_from(p.join(t, on))


async def holders(
    conn: asyncpg.Connection, spec: ResourceSpec, workspace_id: Any, probes: Sequence[dict[str, Any]]
) -> list[set[Any]]:
    """The ids of the live records holding each probe (``{key: value}``), in the probes' order."""
    found: list[set[Any]] = [set() for _ in probes]
    if probes:
        for r in await _holders(spec.table).fetch(conn, ws=workspace_id, probes=list(probes)):
            found[r["n"] - 1].add(r["id"])
    return found


async def definitions(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: Any, object_type: str
) -> Definitions:
    rows = await _DEFINITIONS.fetch(conn, ws=workspace_id, object_type=object_type)
    return {r["name"]: dict(r) for r in rows}  # live rows come last, so they win


async def check(
    conn: asyncpg.Connection, spec: ResourceSpec, ctx: Any, pairs: Sequence[Pair]
) -> dict[int, CRMError]:
    if not applies(spec) or not pairs:
        return {}
    judged = [i for i, (old, new) in enumerate(pairs) if _touches_custom_fields(old, new)]
    if not judged:  # an update that leaves the values alone on a record that stays live or archived
        return {}
    defs = CACHE.get(ctx.workspace_id, spec.object)
    if defs is None:
        return await _judge(conn, spec, ctx, pairs, judged, await _read(conn, ctx.workspace_id, spec.object))
    values = {i: pairs[i][1].get("custom_fields") for i in judged}  # as sent: judging replaces them
    failures = await _judge(conn, spec, ctx, pairs, judged, defs)
    if not failures:
        return failures
    # refused by the cached definitions: judged again by the table's, which may be newer (see cache.py)
    for i, value in values.items():
        pairs[i][1]["custom_fields"] = value
    return await _judge(conn, spec, ctx, pairs, judged, await _read(conn, ctx.workspace_id, spec.object))


async def _read(conn: asyncpg.Connection, workspace_id: Any, object_type: str) -> Definitions:
    token = CACHE.token(workspace_id)
    defs = await definitions(conn, workspace_id, object_type)
    CACHE.put(workspace_id, object_type, defs, token)
    return defs


async def _judge(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Any,
    pairs: Sequence[Pair],
    judged: list[int],
    defs: Definitions,
) -> dict[int, CRMError]:
    if not defs and not STRICT_WITHOUT_DEFINITIONS:
        return {}
    failures: dict[int, CRMError] = {}
    for i in judged:
        old, new = pairs[i]
        errors = _validate(spec, defs, old, new)
        if errors:
            summary = "; ".join(f"{e.path}: {e.message}" for e in errors[:3])
            failures[i] = Unprocessable(f"Invalid custom fields: {summary}", errors)
    unique = {name for name, d in defs.items() if d["is_unique"] and d["archived_at"] is None}
    if unique:
        ok = [(i, pairs[i]) for i in judged if i not in failures]
        failures.update(await _unique_conflicts(conn, spec, ctx, unique, ok))
    return failures


def _touches_custom_fields(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether the definitions have anything to judge: a new record, changed values, or a record coming back
    to life (its unique values must be free again). Other updates skip the definitions' read: a round trip
    on most writes."""
    if old is None or not _identical(new.get("custom_fields"), old.get("custom_fields")):
        return True
    return old.get("archived_at") is not None and new.get("archived_at") is None


def _identical(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down: ``==`` alone takes ``True`` for ``1`` and ``1.0``, and
    a number field must not take a boolean unchecked."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_identical(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _validate(
    spec: ResourceSpec, defs: Definitions, old: Mapping[str, Any] | None, new: dict[str, Any]
) -> list[FieldError]:
    before: Mapping[str, Any] = (old or {}).get("custom_fields") or {}
    after: dict[str, Any] = {}
    errors: list[FieldError] = []
    for key, value in (new.get("custom_fields") or {}).items():
        path = f"/custom_fields/{key}"
        if value is None:
            continue  # null clears the key
        if key in before and before[key] == value and type(before[key]) is type(value):
            after[key] = value
            continue
        definition = defs.get(key)
        if definition is None:
            errors.append(FieldError(path, f"no custom field named {key!r} is defined for {spec.object}"))
        elif definition["archived_at"] is not None:
            errors.append(FieldError(path, "the custom field is archived: its values are read-only"))
        else:
            try:
                after[key] = values.normalise(definition, value)
            except values.BadValue as exc:
                errors.append(FieldError(path, f"{definition['type']}: {exc}"))
    for name, definition in defs.items():
        if not definition["required"] or definition["archived_at"] is not None or name in after:
            continue
        if old is None or before.get(name) is not None:
            errors.append(FieldError(f"/custom_fields/{name}", "required"))
    new["custom_fields"] = after
    return errors


def _live_probes(
    unique: set[str], old: Mapping[str, Any] | None, new: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """``{key: value}`` for each unique key this write sets on a live record (or brings back to life)."""
    if new["archived_at"] is not None:
        return []
    revived = old is None or old["archived_at"] is not None
    before: Mapping[str, Any] = (old or {}).get("custom_fields") or {}
    return [
        {key: value}
        for key, value in new["custom_fields"].items()
        if key in unique and (revived or before.get(key) != value)
    ]


async def _unique_conflicts(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Any,
    unique: set[str],
    pairs: Sequence[tuple[int, Pair]],
) -> dict[int, CRMError]:
    wanted = [(i, new["id"], probe) for i, (old, new) in pairs for probe in _live_probes(unique, old, new)]
    if not wanted:
        return {}
    rows = await _holders(spec.table).fetch(
        conn, ws=ctx.workspace_id, probes=[probe for _, _, probe in wanted]
    )
    holders: dict[int, set[Any]] = {}
    for r in rows:
        holders.setdefault(r["n"] - 1, set()).add(r["id"])
    failures: dict[int, CRMError] = {}
    claimed: dict[str, Any] = {}  # an earlier item of the same batch holds a value too
    for n, (i, oid, probe) in enumerate(wanted):
        ((key, value),) = probe.items()
        token = f"{key}\x1f{values.key_text(value)}"
        others = holders.get(n, set()) - {oid}
        if others or claimed.setdefault(token, oid) != oid:
            holder = next(iter(others), claimed.get(token))
            failures.setdefault(
                i,
                Conflict(
                    f"Another live {spec.object} ({holder}) has this value of {key}",
                    [FieldError(f"/custom_fields/{key}", "already in use")],
                ),
            )
    return failures
