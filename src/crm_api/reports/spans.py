"""Records archived at a past moment and restored since (``archive_spans``, migration 0044): a restore clears
``archived_at``, so the ``as_of`` reports leave these out by their kept spans."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from .. import sql


def restored_since(kind: str, ws: Any, as_of: Any) -> Select[Any]:
    """The ids of the ``kind`` objects (``contact``, ``deal``) that were archived at ``as_of`` and have been
    restored since: one range of ``ix_archive_spans_restored`` (restored after ``as_of``), few rows, for a
    hashed ``NOT IN`` (ids are never null)."""
    a = sql.table("archive_spans")
    return select(a.c.object_id).where(
        a.c.workspace_id == ws,
        a.c.object_type == sql.const(kind),
        a.c.restored_at > as_of,
        a.c.archived_at <= as_of,
    )
