"""History's SQL: the object's events walked newest first on ``ix_events_object`` (workspace_id,
object_id, sequence), each fanned out into one row per field it changed.

A ``.created`` event sets every field it shows (old value null; empty values left out); any other event
changed the fields named in ``data.previous``. Events a spec derives from an update (``deal.won``,
``ticket.status_changed``...) repeat that update's ``previous`` and are skipped, so a change shows once.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Text,
    all_,
    and_,
    any_,
    case,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from .. import sql
from ..events.types import DERIVED  # the same change as the ``.updated`` event written beside them

# on a create, these are the record's frame, not fields set by the caller
_FRAME = ("id", "object", "created_at", "updated_at", "version")


def _json(text: str) -> ColumnElement[Any]:
    """A jsonb constant, given as JSON text (the driver's jsonb codec passes text through): ``'null'`` is
    JSON null, not SQL NULL."""
    return literal(text, JSONB)


@sql.shape
def _page(by_field: bool, with_cursor: bool) -> Select[Any]:
    e = sql.table("events").alias("e")
    created = sql.param("created_type", Text)  # "<object>.created"
    is_create = e.c.type == created
    # each event fanned out into one row per field: every field of a create, the changed ones otherwise
    k = func.jsonb_object_keys(
        case((is_create, e.c.data["object"]), else_=func.coalesce(e.c.data["previous"], _json("{}")))
    ).column_valued("k")
    f = select(
        k.label("field"),
        case((is_create, _json("null")), else_=e.c.data["previous"][k]).label("old_value"),
        e.c.data["object"][k].label("new_value"),
    ).lateral("f")
    empty = [_json("null"), _json("[]"), _json("{}")]
    stmt = (
        select(
            e.c.sequence,
            e.c.id.label("event_id"),
            e.c.type.label("event_type"),
            e.c.created_at.label("at"),
            e.c.actor,
            e.c.request_id,
            f.c.field,
            f.c.old_value,
            f.c.new_value,
        )
        .select_from(e.join(f, true()))
        .where(
            e.c.workspace_id == sql.param("ws"),
            e.c.object_id == sql.param("object_id", UUID),
            e.c.object_type == sql.param("object_type", Text),
            e.c.type != all_(sql.param("derived", ARRAY(Text))),
            ~and_(
                is_create,
                or_(
                    f.c.field == any_(sql.param("frame", ARRAY(Text))),
                    func.coalesce(f.c.new_value, empty[0]).in_(empty),
                ),
            ),
        )
    )
    if by_field:
        stmt = stmt.where(f.c.field == sql.param("field", Text))
    if with_cursor:
        after_sequence, after_field = sql.param("after_sequence", BigInteger), sql.param("after_field", Text)
        # sequence first, so the scan starts at the cursor in the index
        stmt = stmt.where(
            e.c.sequence <= after_sequence, or_(e.c.sequence < after_sequence, f.c.field > after_field)
        )
    return stmt.order_by(e.c.sequence.desc(), f.c.field.asc()).limit(sql.param("limit"))


async def page(
    conn: asyncpg.Pool | asyncpg.Connection,
    object_type: str,
    workspace_id: uuid.UUID,
    object_id: uuid.UUID,
    field: str | None,
    after: tuple[int, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """``limit + 1`` changes, newest first; within one event by field name."""
    params: dict[str, Any] = {
        "ws": workspace_id,
        "object_id": object_id,
        "created_type": f"{object_type}.created",
        "object_type": object_type,
        "derived": list(DERIVED),
        "frame": list(_FRAME),
        "limit": int(limit) + 1,
    }
    if field is not None:
        params["field"] = field
    if after is not None:
        params["after_sequence"], params["after_field"] = after
    stmt = _page(field is not None, after is not None)
    return [dict(r) for r in await stmt.fetch(conn, **params)]
