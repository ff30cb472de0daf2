"""The feed's statements, shared by ``GET /v1/events`` and its live stream: a page of the workspace's
events up to the feed's bound (``horizon.py``), filtered by type and object, its shape a key of a
``Shapes`` cache."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import BigInteger, Select, select

from .. import sql
from ..errors import field_error
from . import horizon

_TYPE = re.compile(r"^(\*|[a-z_]+\.(\*|[a-z_]+))$")
COLUMNS = ("id", "type", "object_type", "object_id", "sequence", "created_at", "actor", "request_id", "data")
PAGES = sql.Shapes(256)


def page_statement(
    type_op: str | None, by_object: bool, after: bool, cursor: bool, desc: bool, limit: int
) -> Select[Any]:
    """A page of the feed; which conditions it has is its shape, their values are parameters."""
    e = sql.table("events")
    where = [e.c.workspace_id == sql.param("ws"), e.c.sequence <= sql.param("bound", BigInteger)]
    if type_op == "prefix":
        where.append(e.c.type.like(sql.param("type")))
    elif type_op == "eq":
        where.append(e.c.type == sql.param("type"))
    if by_object:
        where.append(e.c.object_id == sql.param("object_id"))
    if after:
        where.append(e.c.sequence > sql.param("after"))
    if cursor:
        where.append(e.c.sequence.op("<" if desc else ">")(sql.param("cursor", BigInteger)))
    order = e.c.sequence.desc() if desc else e.c.sequence.asc()
    return select(*sql.columns(COLUMNS, e)).where(*where).order_by(order).limit(limit + 1)


def type_filter(type_: str | None, params: dict[str, Any]) -> str | None:
    """The shape of a ``type=`` filter (``eq``, ``prefix`` or None for all), its value put in ``params``;
    anything but ``contact.created``, ``contact.*`` or ``*`` is a 422 at ``/type``."""
    if type_ is None or type_ == "*":
        return None
    if not _TYPE.match(type_):
        raise field_error("/type", "expected an event type such as contact.created or contact.*")
    if type_.endswith(".*"):
        params["type"] = type_[:-1] + "%"
        return "prefix"
    params["type"] = type_
    return "eq"


def to_api(row: Any) -> dict[str, Any]:
    return {"object": "event", **dict(row)}


async def after(
    conn: Any,
    workspace_id: uuid.UUID,
    sequence: int,
    type_op: str | None,
    params: dict[str, Any],
    limit: int,
) -> list[Any]:
    """Up to ``limit + 1`` settled events after ``sequence``, oldest first; ``params`` hold the filters'
    values (``type``, ``object_id``)."""
    shape = (type_op, "object_id" in params, True, False, False, limit)
    statement = PAGES.get(shape, lambda: page_statement(*shape))
    bound = await horizon.bound(conn)  # first, and in a statement of its own: see horizon.py
    return await statement.fetch(conn, **params, ws=workspace_id, after=sequence, bound=bound)
