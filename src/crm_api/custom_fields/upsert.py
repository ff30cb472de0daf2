"""``PUT /v1/<resource>/by-custom-field/{name}/{value}``: a live unique custom field as an upsert key."""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy import Select, select
from sqlalchemy.dialects.postgresql import JSONB

from .. import sql
from ..auth import Context
from ..errors import FieldError, Unprocessable
from ..locks import key_lock, lock_keys
from ..resources import service
from ..resources.custom_fields import enforce, values
from ..resources.spec import ResourceSpec


@sql.shape
def _holder(table: str) -> Select[Any]:
    """A live record of ``table`` whose custom fields hold ``probe`` (``{name: value}``), by the GIN index."""
    t = sql.table(table)
    return (
        select(t.c.id)
        .where(
            t.c.workspace_id == sql.param("ws"),
            t.c.archived_at.is_(None),
            t.c.custom_fields.contains(sql.param("probe", JSONB)),
        )
        .limit(sql.const(1))
    )


def _from_path(definition: dict[str, Any], raw: str) -> Any:
    """A path segment is text: numbers are read as JSON numbers, everything else as given."""
    if definition["type"] == "number":
        try:
            return int(raw)
        except ValueError:
            try:
                return float(raw)
            except ValueError:
                return raw  # normalise names the problem
    return raw


async def upsert(
    conn: asyncpg.Connection,
    spec: ResourceSpec,
    ctx: Context,
    name: str,
    raw_value: str,
    payload: dict[str, Any],
) -> tuple[int, dict[str, Any]]:
    """201 with a new object holding the value, or 200 with the live one that holds it, updated. Upserts
    of one value queue on an advisory lock, so concurrent ones end as one object."""
    defs = await enforce.definitions(conn, ctx.workspace_id, spec.object)
    definition = defs.get(name)
    if definition is None or definition["archived_at"] is not None or not definition["is_unique"]:
        raise Unprocessable(
            f"No live unique custom field named {name!r} for {spec.object}",
            [FieldError("/path/name", "not a live unique custom field")],
        )
    try:
        value = values.normalise(definition, _from_path(definition, raw_value))
    except values.BadValue as exc:
        raise Unprocessable(
            f"The value does not fit {name}", [FieldError("/path/value", f"{definition['type']}: {exc}")]
        ) from None
    given = dict(payload.get("custom_fields") or {})
    if given.get(name) is not None:
        try:
            same = values.normalise(definition, given[name]) == value
        except values.BadValue:
            same = False
        if not same:
            raise Unprocessable(
                f"The body's {name} differs from the one in the path",
                [FieldError(f"/custom_fields/{name}", "differs")],
            )
    await lock_keys(
        conn, [key_lock(ctx.workspace_id, spec.name, "custom_field", name, values.key_text(value))]
    )
    holder = await _holder(spec.table).fetchval(conn, ws=ctx.workspace_id, probe={name: value})
    if holder is not None:
        row = await service.get(conn, spec, ctx, holder)
        # like external ids on their upsert: the body's keys are merged into the stored ones
        merged = {**row["custom_fields"], **given, name: value}
        return 200, await service.update(conn, spec, ctx, holder, {**payload, "custom_fields": merged}, None)
    body = {**payload, "custom_fields": {**given, name: value}}
    return 201, await service.create(conn, spec, ctx, service.validate_upsert_create(spec, body))
