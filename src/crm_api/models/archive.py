"""When records were archived and restored since (migration 0044): the reports that answer "as it stood at
``as_of``" need to know a record was archived then, and a restore clears ``archived_at``."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, ForeignKeyConstraint, Index, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class ArchiveSpan(Base):
    """One row per restore of a contact or a deal: it was archived from ``archived_at`` until
    ``restored_at``. Written by a row trigger on each table that fires only when ``archived_at`` goes from
    set to null, so no write path can skip it and other writes pay nothing; kept for good. No foreign key to
    the record: one table for two kinds of object (an erase keeps the contact's row anyway)."""

    __tablename__ = "archive_spans"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        # the spans that cover a moment: restored after it (one range), archived by it (in the index)
        Index(
            "ix_archive_spans_restored",
            "workspace_id",
            "object_type",
            "restored_at",
            postgresql_include=["archived_at", "object_id"],
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    object_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    archived_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    object_type: Mapped[str] = mapped_column(Text, nullable=False)
    """``contact`` or ``deal``."""
    restored_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


__all__ = ["ArchiveSpan"]
