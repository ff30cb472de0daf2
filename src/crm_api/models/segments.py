"""Segments: saved sets of contacts, companies or deals, and who is in them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKeyConstraint, Index, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, RecordMixin

SEGMENT_OBJECT_TYPES = ("contact", "company", "deal")
SEGMENT_KINDS = ("dynamic", "static")
SEGMENT_STATUSES = ("building", "ready", "failed")
MEMBER_REASONS = ("matched", "unmatched", "added", "removed", "archived", "merged", "erased")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Segment(RecordMixin, Base):
    __tablename__ = "segments"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        CheckConstraint(_in("object_type", SEGMENT_OBJECT_TYPES), name="object_type"),
        CheckConstraint(_in("kind", SEGMENT_KINDS), name="kind"),
        CheckConstraint(_in("status", SEGMENT_STATUSES), name="status"),
        Index("ix_segments_created", "workspace_id", "created_at", "id"),
        Index("ix_segments_updated", "workspace_id", "updated_at", "id"),
        Index("ix_segments_name", "workspace_id", "name", "id"),
        Index("ix_segments_object_type", "workspace_id", "object_type"),
        Index("ix_segments_kind", "workspace_id", "kind"),
        Index("ix_segments_status", "workspace_id", "status"),
        Index("ix_segments_member_count", "workspace_id", "member_count", "id"),
        # the workers' look-ups: a workspace's live dynamic segments of an object type
        Index(
            "ix_segments_dynamic_live",
            "workspace_id",
            "object_type",
            postgresql_where=text("kind = 'dynamic' AND archived_at IS NULL"),
        ),
        Index(
            "ix_segments_search",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
    )

    name: Mapped[str] = mapped_column(Text, nullable=False)
    object_type: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    filter: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    member_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'ready'"))
    external_ids: Mapped[dict[str, object]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))


class SegmentMember(Base):
    """One object in one segment; keyed so a segment's members page by object id and an object's
    segments are one index range.

    No foreign key to ``segments`` (migration 0042: its check per row was ~30% of writing an entry): the one
    writer, ``segments.repository.change_many``, writes only for segments read and locked in its
    transaction, segments are archived rather than deleted, and the trigger ``segments_delete_members``
    deletes a deleted segment's members and history, as the key's cascade did."""

    __tablename__ = "segment_members"
    __table_args__ = (Index("ix_segment_members_object", "workspace_id", "object_id", "segment_id"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    segment_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    object_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    added_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=text("now()")
    )
    reason: Mapped[str] = mapped_column(Text, nullable=False)


class SegmentChange(Base):
    """A segment's membership history: every entry and exit, kept beyond the event log's 30 days. No
    foreign key to ``segments``, as ``SegmentMember``."""

    __tablename__ = "segment_changes"
    __table_args__ = (
        CheckConstraint(_in("change", ("added", "removed")), name="change"),
        Index("ix_segment_changes_segment", "workspace_id", "segment_id", "id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    """The event's id (UUIDv7): the history pages by it."""
    segment_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    object_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    change: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class SegmentCursor(Base):
    """How far the segment workers have followed a workspace's events (its sequence)."""

    __tablename__ = "segment_cursors"
    __table_args__ = (ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, nullable=False)


class SegmentBuild(Base):
    """A dynamic segment's build under way, walked in object id order a chunk at a time: the segment
    version it builds (an edit bumps the version, so the walk starts over), the last object id done, and
    the failed attempts in a row (the segment turns ``failed`` after ``segment_build_attempts``)."""

    __tablename__ = "segment_builds"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "segment_id"], ["segments.workspace_id", "segments.id"], ondelete="CASCADE"
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    segment_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    after: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    failures: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
