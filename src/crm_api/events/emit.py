"""``emit``: the one way a change becomes an event row.

It returns the row rather than inserting it, because the repository folds the event into the same statement
as the write it records (one round trip, and the event cannot exist without its change or the reverse).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Protocol

from ..ids import uuid7


class Actor(Protocol):
    @property
    def workspace_id(self) -> uuid.UUID: ...

    request_id: str | None

    @property
    def principal(self) -> Any: ...


def emit(
    ctx: Actor,
    type_: str,
    object_type: str,
    object_id: uuid.UUID,
    obj: dict[str, Any],
    previous: dict[str, Any],
    at: dt.datetime,
) -> dict[str, Any]:
    return {
        "workspace_id": ctx.workspace_id,
        "id": uuid7(),
        "type": type_,
        "object_type": object_type,
        "object_id": object_id,
        "actor": ctx.principal.actor,
        "request_id": ctx.request_id,
        "data": {"object": obj, "previous": previous},
        "created_at": at,
    }
