"""The events table: the transactional outbox every write appends to."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKeyConstraint, Identity, Index, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from .base import Base


class XID8(UserDefinedType[int]):
    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


# let reflection (alembic check) recognise the column type
ischema_names["xid8"] = XID8


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        # unique per workspace, not globally: Citus needs the distribution column in every unique index
        Index("uq_events_workspace_sequence", "workspace_id", "sequence", unique=True),
        Index("ix_events_object", "workspace_id", "object_id", "sequence"),
        Index("ix_events_created", "created_at"),
        Index(
            "ix_events_type", "workspace_id", "type", "sequence", postgresql_ops={"type": "text_pattern_ops"}
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, Identity(always=False), nullable=False)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    object_type: Mapped[str] = mapped_column(Text, nullable=False)
    object_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    request_id: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    txid: Mapped[int] = mapped_column(XID8, nullable=False, server_default=text("pg_current_xact_id()"))
    """The writing transaction: the feed shows an event only once every older transaction has ended, so a
    late commit cannot slip in behind a reader's cursor."""


class EventStreamWorkspace(Base):
    """A workspace whose events some API process streams (``events/stream.py``): the events trigger
    notifies for these only, so writes pay no NOTIFY, whose commit takes a lock every notifying commit of
    the server queues on, while nobody streams. Unlogged: a crash empties it, and hubs fill it again when
    they listen again."""

    __tablename__ = "event_stream_workspaces"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        {"prefixes": ["UNLOGGED"]},
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    hub_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    """The process's hub; a row its hub stopped refreshing (a killed process) no longer counts."""
    seen_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=text("now()")
    )


class IdempotencyRecord(Base):
    """A finished write's response, replayed for a retry with the same Idempotency-Key."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        Index("ix_idempotency_keys_created", "created_at"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    request_hash: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[int] = mapped_column(BigInteger, nullable=False)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
