"""Automations: rules that act on the workspace's events, the per-workspace cursor the workers follow the
event log with, and one run row per (automation, triggering event)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKeyConstraint, Index, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, RecordMixin

RUN_STATUSES = ("succeeded", "failed", "stopped")


class Automation(RecordMixin, Base):
    __tablename__ = "automations"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        Index("ix_automations_name", "workspace_id", "name", "id"),
        Index("ix_automations_enabled", "workspace_id", "enabled", "created_at", "id"),
        Index("ix_automations_created", "workspace_id", "created_at", "id"),
        Index("ix_automations_updated", "workspace_id", "updated_at", "id"),
        Index(
            "ix_automations_search",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
    )

    name: Mapped[str] = mapped_column(Text, nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    trigger: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    external_ids: Mapped[dict[str, object]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'")
    )
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))


class AutomationCursor(Base):
    """How far the workers have followed a workspace's event log; a worker holds the row locked while it
    runs a batch, and moves it in the batch's own transaction."""

    __tablename__ = "automation_cursors"
    __table_args__ = (ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, nullable=False)


class AutomationTurn(Base):
    """Whose turn it is in a round robin: the next index into an assigning action's team, taken and
    moved in the run's transaction (a row lock), so workers in any number of processes share one
    sequence."""

    __tablename__ = "automation_turns"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "automation_id"],
            ["automations.workspace_id", "automations.id"],
            ondelete="CASCADE",
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    automation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    action: Mapped[int] = mapped_column(Integer, primary_key=True)
    """The action's index in the automation's list."""
    turns: Mapped[int] = mapped_column(BigInteger, nullable=False)


class AutomationSchedule(Base):
    """When a schedule trigger's automation is next checked (no row: now)."""

    __tablename__ = "automation_schedules"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "automation_id"],
            ["automations.workspace_id", "automations.id"],
            ondelete="CASCADE",
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    automation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    next_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class AutomationRun(Base):
    """One run of an automation for one event, written in the transaction of its actions' writes: the
    unique key makes it exactly once."""

    __tablename__ = "automation_runs"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "automation_id"],
            ["automations.workspace_id", "automations.id"],
            ondelete="CASCADE",
        ),
        Index("uq_automation_runs_event", "workspace_id", "automation_id", "event_id", unique=True),
        Index("ix_automation_runs_list", "workspace_id", "automation_id", "created_at", "id"),
        # a schedule's check: has this record had its run since it last changed
        Index("ix_automation_runs_object", "workspace_id", "automation_id", "object_id", "created_at"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    automation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    event_type: Mapped[str] = mapped_column(Text, nullable=False)
    object_type: Mapped[str] = mapped_column(Text, nullable=False)
    object_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    depth: Mapped[int] = mapped_column(Integer, nullable=False)
    """1 for an event a person or integration caused; one more per automation in the chain before it."""
    status: Mapped[str] = mapped_column(Text, nullable=False)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
