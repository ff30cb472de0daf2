"""An import's ``upsert_key`` naming a unique custom field (``custom_fields.<name>``): each row updates the
live record holding its value, or creates one that holds it, as ``PUT /v1/<r>/by-custom-field`` does.

Per chunk: the values are locked (the same advisory locks as that route, so the two queue on a value), the
holders found in one query over the GIN index, and the chunk written through the batch upsert with those
matches. A value repeated in the chunk splits it: the later row runs after the earlier one is written, and
updates what it left (the issue's "the later row updates the earlier").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from ..auth import Context
from ..errors import FieldError, Unprocessable
from ..locks import key_lock, lock_keys
from ..resources import repository as resources
from ..resources.custom_fields import enforce, values
from ..resources.spec import ResourceSpec

PREFIX = "custom_fields."
Outcomes = list[tuple[str, dict[str, Any]]]
Write = Callable[[list[dict[str, Any] | None], dict[int, dict[str, Any]]], Awaitable[Outcomes]]


def field_of(upsert_key: str | None) -> str | None:
    """The custom field's name when the key names one."""
    if upsert_key is not None and upsert_key.startswith(PREFIX):
        return upsert_key[len(PREFIX) :]
    return None


def definition_problem(definitions: dict[str, Any], name: str) -> str | None:
    """Why ``name`` cannot be the key (None when it is a live unique custom field)."""
    definition = definitions.get(name)
    if definition is None or definition["archived_at"] is not None or not definition["is_unique"]:
        return f"custom_fields.{name} is not a live unique custom field"
    return None


def _token(definition: dict[str, Any], raw: Any) -> tuple[str, Any] | None:
    """The value as stored (normalised) and as a comparable text; None for a value that does not fit
    (the write refuses it with the definition's own message)."""
    try:
        value = values.normalise(definition, raw)
    except values.BadValue:
        return None
    return values.key_text(value), value


def _missing(ctx: Context, name: str) -> tuple[str, dict[str, Any]]:
    error = Unprocessable(
        f"Upsert needs custom_fields.{name} to match on",
        [FieldError(f"/custom_fields/{name}", "required in upsert mode")],
    )
    return "failed", {"status": error.status, "error": error.body(ctx.request_id or "")}


async def upsert(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Context,
    definition: dict[str, Any],
    bodies: list[dict[str, Any] | None],
    write: Write,
) -> Outcomes:
    """Write ``bodies`` (in order, one outcome each) matched on the custom field ``definition``; ``write``
    runs the batch upsert of some bodies with the rows they matched (by position among those bodies)."""
    name = definition["name"]
    tokens = [
        _token(definition, (body.get("custom_fields") or {}).get(name)) if body is not None else None
        for body in bodies
    ]
    await lock_keys(
        conn, [key_lock(ctx.workspace_id, spec.name, "custom_field", name, t[0]) for t in tokens if t]
    )
    outcomes: dict[int, tuple[str, dict[str, Any]]] = {}
    segment: list[int] = []
    seen: set[str] = set()
    for i, body in enumerate(bodies):
        if body is None or (body.get("custom_fields") or {}).get(name) is None:
            outcomes[i] = _missing(ctx, name)
            continue
        token = tokens[i]
        if token is not None and token[0] in seen:  # a repeat: what comes before it is written first
            outcomes.update(await _segment(conn, spec, ctx, name, bodies, tokens, segment, write))
            segment, seen = [], set()
        segment.append(i)
        if token is not None:
            seen.add(token[0])
    outcomes.update(await _segment(conn, spec, ctx, name, bodies, tokens, segment, write))
    return [outcomes[i] for i in range(len(bodies))]


async def _segment(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Context,
    name: str,
    bodies: list[dict[str, Any] | None],
    tokens: list[tuple[str, Any] | None],
    items: list[int],
    write: Write,
) -> dict[int, tuple[str, dict[str, Any]]]:
    """Bodies naming each value once: the holders found, their custom fields kept beside the row's."""
    if not items:
        return {}
    probes = [(pos, {name: token[1]}) for pos, i in enumerate(items) if (token := tokens[i]) is not None]
    held = await enforce.holders(conn, spec, ctx.workspace_id, [probe for _, probe in probes])
    owner = {pos: next(iter(ids)) for (pos, _), ids in zip(probes, held, strict=True) if ids}
    rows = {
        r["id"]: r
        for r in await resources.fetch_by_ids(conn, spec, ctx.workspace_id, list(set(owner.values())))
    }
    matched: dict[int, dict[str, Any]] = {}
    batch: list[dict[str, Any] | None] = []
    for pos, i in enumerate(items):
        body = dict(bodies[i] or {})
        if pos in owner and owner[pos] in rows:
            row = rows[owner[pos]]
            matched[pos] = row
            # like the route's upsert: the row's custom fields are merged into the stored ones
            body["custom_fields"] = {**(row["custom_fields"] or {}), **body["custom_fields"]}
        batch.append(body)
    return dict(zip(items, await write(batch, matched), strict=True))
