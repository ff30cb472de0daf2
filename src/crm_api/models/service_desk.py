"""The service desk: SLA policies, tickets and their comments."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, ForeignKeyConstraint, Index, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, RecordMixin

TICKET_STATUSES = ("new", "open", "pending", "on_hold", "solved", "closed")
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")
TICKET_CHANNELS = ("email", "phone", "chat", "web", "api")
SLA_HOURS = ("calendar", "business")

# The statuses in which each SLA clock runs. The breach scan's partial indexes repeat these lists, so the
# planner can match its predicates to them.
FIRST_RESPONSE_RUNNING = ("new", "open", "pending", "on_hold")
RESOLUTION_RUNNING = ("new", "open")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _jsonb() -> Mapped[dict[str, object]]:
    return mapped_column(JSONB, nullable=False, server_default=text("'{}'"))


def _ts() -> Mapped[dt.datetime | None]:
    return mapped_column(DateTime(timezone=True))


class SlaPolicy(RecordMixin, Base):
    __tablename__ = "sla_policies"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        CheckConstraint(_in("hours", SLA_HOURS), name="hours"),
        # at most one live default policy per workspace
        Index(
            "uq_sla_policies_default_live",
            "workspace_id",
            unique=True,
            postgresql_where=text("is_default AND archived_at IS NULL"),
        ),
        Index("ix_sla_policies_created", "workspace_id", "created_at", "id"),
        Index("ix_sla_policies_updated", "workspace_id", "updated_at", "id"),
        Index("ix_sla_policies_name", "workspace_id", "name", "id"),
        Index("ix_sla_policies_hours", "workspace_id", "hours"),
        Index("ix_sla_policies_time_zone", "workspace_id", "time_zone"),
        Index("ix_sla_policies_is_default", "workspace_id", "is_default"),
        Index(
            "ix_sla_policies_search",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
    )

    name: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    hours: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'calendar'"))
    time_zone: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'UTC'"))
    schedule: Mapped[dict[str, object]] = _jsonb()
    """``{"mon": [{"start": "09:00", "end": "17:00"}], ...}`` in ``time_zone``'s wall time."""
    targets: Mapped[dict[str, object]] = _jsonb()
    """``{"urgent": {"first_response_minutes": 30, "resolution_minutes": 240}, ...}``"""
    external_ids: Mapped[dict[str, object]] = _jsonb()
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))


class Ticket(RecordMixin, Base):
    __tablename__ = "tickets"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        ForeignKeyConstraint(["workspace_id", "requester_id"], ["contacts.workspace_id", "contacts.id"]),
        ForeignKeyConstraint(["workspace_id", "company_id"], ["companies.workspace_id", "companies.id"]),
        ForeignKeyConstraint(
            ["workspace_id", "sla_policy_id"], ["sla_policies.workspace_id", "sla_policies.id"]
        ),
        CheckConstraint(_in("status", TICKET_STATUSES), name="status"),
        CheckConstraint(_in("priority", TICKET_PRIORITIES), name="priority"),
        CheckConstraint(_in("channel", TICKET_CHANNELS), name="channel"),
        Index("ix_tickets_created", "workspace_id", "created_at", "id"),
        # the service report (reports/service.py): tickets created in a period, every column it reads carried
        # so the report is an index-only scan
        Index(
            "ix_tickets_report_created",
            "workspace_id",
            "created_at",
            postgresql_include=[
                *("priority", "assignee_id", "channel", "first_responded_at", "solved_at"),
                *("first_response_due_at", "resolution_due_at", "first_response_breached_at"),
                *("resolution_breached_at", "archived_at"),
            ],
        ),
        Index("ix_tickets_updated", "workspace_id", "updated_at", "id"),
        Index("ix_tickets_status", "workspace_id", "status", "created_at", "id"),
        Index("ix_tickets_priority", "workspace_id", "priority", "created_at", "id"),
        Index("ix_tickets_channel", "workspace_id", "channel", "created_at", "id"),
        Index("ix_tickets_requester", "workspace_id", "requester_id", "created_at", "id"),
        Index("ix_tickets_company", "workspace_id", "company_id", "created_at", "id"),
        Index("ix_tickets_assignee", "workspace_id", "assignee_id", "created_at", "id"),
        Index("ix_tickets_sla_policy", "workspace_id", "sla_policy_id", "created_at", "id"),
        Index("ix_tickets_subject", "workspace_id", "subject"),
        Index("ix_tickets_first_response_due", "workspace_id", "first_response_due_at"),
        Index("ix_tickets_resolution_due", "workspace_id", "resolution_due_at"),
        Index("ix_tickets_first_responded", "workspace_id", "first_responded_at"),
        Index("ix_tickets_solved", "workspace_id", "solved_at"),
        Index("ix_tickets_first_response_breached", "workspace_id", "first_response_breached_at"),
        Index("ix_tickets_resolution_breached", "workspace_id", "resolution_breached_at"),
        Index("ix_tickets_tags", "tags", postgresql_using="gin"),
        Index(
            "ix_tickets_custom_fields",
            "custom_fields",
            postgresql_using="gin",
            postgresql_ops={"custom_fields": "jsonb_path_ops"},
        ),
        Index(
            "ix_tickets_search",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
        # The breach job's scans, across workspaces: only tickets whose clock still runs and has not breached
        # are in these indexes, so a scan reads the overdue ones and nothing else.
        Index(
            "ix_tickets_first_response_unbreached",
            "first_response_due_at",
            postgresql_where=text(
                "first_response_breached_at IS NULL AND first_responded_at IS NULL "
                "AND first_response_due_at IS NOT NULL AND archived_at IS NULL AND "
                + _in("status", FIRST_RESPONSE_RUNNING)
            ),
        ),
        Index(
            "ix_tickets_resolution_unbreached",
            "resolution_due_at",
            postgresql_where=text(
                "resolution_breached_at IS NULL AND resolution_due_at IS NOT NULL "
                "AND archived_at IS NULL AND " + _in("status", RESOLUTION_RUNNING)
            ),
        ),
    )

    subject: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'new'"))
    priority: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'normal'"))
    channel: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'api'"))
    requester_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    company_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default=text("'{}'"))
    custom_fields: Mapped[dict[str, object]] = _jsonb()
    external_ids: Mapped[dict[str, object]] = _jsonb()
    sla_policy_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    first_responded_at: Mapped[dt.datetime | None] = _ts()
    solved_at: Mapped[dt.datetime | None] = _ts()
    closed_at: Mapped[dt.datetime | None] = _ts()
    first_response_due_at: Mapped[dt.datetime | None] = _ts()
    resolution_due_at: Mapped[dt.datetime | None] = _ts()
    first_response_breached_at: Mapped[dt.datetime | None] = _ts()
    resolution_breached_at: Mapped[dt.datetime | None] = _ts()
    sla_paused_at: Mapped[dt.datetime | None] = _ts()
    """Since when the resolution clock stands still (pending, on hold, solved); null while it runs."""
    sla_paused_seconds: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    """Paused time already added to ``resolution_due_at``, counted in the policy's hours."""
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    number: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default=text("nextval('ticket_numbers'::regclass)")
    )
    """What people call the ticket (``#1042``), drawn from the ``ticket_numbers`` sequence on create: unique
    across the installation, so increasing but with gaps within a workspace; searchable. The write pipeline
    draws it before the insert (``tickets/spec.py``) so that ``search_text`` holds it; the default serves
    inserts made in SQL."""


class TicketComment(RecordMixin, Base):
    __tablename__ = "ticket_comments"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        ForeignKeyConstraint(["workspace_id", "ticket_id"], ["tickets.workspace_id", "tickets.id"]),
        CheckConstraint("author_type IN ('agent', 'requester')", name="author_type"),
        Index("ix_ticket_comments_ticket", "workspace_id", "ticket_id", "created_at", "id"),
        # erase finds a requester's own comments by author, whatever ticket they sit on now
        Index(
            "ix_ticket_comments_requester",
            "workspace_id",
            "author_id",
            postgresql_where=text("author_type = 'requester'"),
        ),
    )

    ticket_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    public: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    author_type: Mapped[str] = mapped_column(Text, nullable=False)
    author_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))


__all__ = [
    "FIRST_RESPONSE_RUNNING",
    "RESOLUTION_RUNNING",
    "SLA_HOURS",
    "TICKET_CHANNELS",
    "TICKET_PRIORITIES",
    "TICKET_STATUSES",
    "SlaPolicy",
    "Ticket",
    "TicketComment",
]
