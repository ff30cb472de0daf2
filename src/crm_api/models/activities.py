"""Activities: notes, calls, emails, meetings and tasks in one table, linked to any mix of records.

The timeline reads this table by ``(workspace_id, occurred_at, id)`` and by the GIN indexes on the id arrays,
so those indexes are part of its contract.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKeyConstraint, Index, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, RecordMixin

ACTIVITY_TYPES = ("note", "call", "email", "meeting", "task")
DIRECTIONS = ("inbound", "outbound")
PRIORITIES = ("low", "normal", "high")
LINK_COLUMNS = ("contact_ids", "company_ids", "deal_ids", "ticket_ids")
OPEN_TASK = "type = 'task' AND completed_at IS NULL"
"""The condition of ``open=true``, spelled as the partial index's predicate so the planner can match them."""


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    return CheckConstraint(f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")", name=column)


def _ids() -> Mapped[list[uuid.UUID]]:
    return mapped_column(ARRAY(UUID(as_uuid=True)), nullable=False, server_default=text("'{}'"))


class Activity(RecordMixin, Base):
    __tablename__ = "activities"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        _one_of("type", ACTIVITY_TYPES),
        _one_of("direction", DIRECTIONS),
        _one_of("priority", PRIORITIES),
        CheckConstraint("duration_seconds >= 0", name="duration_seconds"),
        Index("ix_activities_created", "workspace_id", "created_at", "id"),
        Index("ix_activities_updated", "workspace_id", "updated_at", "id"),
        Index("ix_activities_occurred", "workspace_id", "occurred_at", "id"),
        Index("ix_activities_due", "workspace_id", "due_at", "id"),
        Index("ix_activities_completed", "workspace_id", "completed_at", "id"),
        Index("ix_activities_type", "workspace_id", "type", "created_at", "id"),
        Index("ix_activities_owner", "workspace_id", "owner_id", "created_at", "id"),
        # a user's task list: open tasks by due date, small because done tasks leave it
        Index("ix_activities_open_tasks", "workspace_id", "due_at", "id", postgresql_where=text(OPEN_TASK)),
        *(Index(f"ix_activities_{c}", c, postgresql_using="gin") for c in LINK_COLUMNS),
        Index(
            "ix_activities_custom_fields",
            "custom_fields",
            postgresql_using="gin",
            postgresql_ops={"custom_fields": "jsonb_path_ops"},
        ),
        Index(
            "ix_activities_search",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
    )

    type: Mapped[str] = mapped_column(Text, nullable=False)
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    direction: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[int | None] = mapped_column(BigInteger)
    due_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    priority: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    contact_ids: Mapped[list[uuid.UUID]] = _ids()
    company_ids: Mapped[list[uuid.UUID]] = _ids()
    deal_ids: Mapped[list[uuid.UUID]] = _ids()
    ticket_ids: Mapped[list[uuid.UUID]] = _ids()
    custom_fields: Mapped[dict[str, object]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'")
    )
    external_ids: Mapped[dict[str, object]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'")
    )
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    """Lower-cased subject, what ``q=`` matches (trigram index)."""


__all__ = ["ACTIVITY_TYPES", "DIRECTIONS", "LINK_COLUMNS", "OPEN_TASK", "PRIORITIES", "Activity"]
