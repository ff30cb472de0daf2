"""Ticket and comment bodies, and both as the API returns them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints
from typing_extensions import TypeAliasType

from ..resources.schemas import (
    CustomFields,
    ExternalIds,
    MemberRef,
    ReadModel,
    Tags,
    WriteModel,
    _no_nul,
    not_clearable,
)

TicketStatus = TypeAliasType("TicketStatus", Literal["new", "open", "pending", "on_hold", "solved", "closed"])
TicketPriority = TypeAliasType("TicketPriority", Literal["low", "normal", "high", "urgent"])
TicketChannel = TypeAliasType("TicketChannel", Literal["email", "phone", "chat", "web", "api"])
Subject = Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(_no_nul)]
LongText = Annotated[str, StringConstraints(max_length=65536), AfterValidator(_no_nul)]


class TicketCreate(WriteModel):
    subject: Subject
    description: LongText | None = None
    status: TicketStatus = "new"
    priority: TicketPriority = "normal"
    channel: TicketChannel = "api"
    requester_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    assignee_id: MemberRef | None = None
    sla_policy_id: uuid.UUID | None = Field(
        None, description="Unset: the workspace's default SLA policy, if it has one"
    )
    tags: Tags = []
    custom_fields: CustomFields = {}
    external_ids: ExternalIds = {}


class TicketUpdate(WriteModel):
    """Absent fields stay as they are; ``null`` clears (``sla_policy_id: null`` removes the SLA)."""

    subject: Subject | None = not_clearable()
    description: LongText | None = None
    status: TicketStatus | None = not_clearable()
    priority: TicketPriority | None = not_clearable()
    channel: TicketChannel | None = not_clearable()
    requester_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    assignee_id: MemberRef | None = None
    sla_policy_id: uuid.UUID | None = None
    tags: Tags | None = None
    custom_fields: CustomFields | None = None
    external_ids: ExternalIds | None = None


class Ticket(ReadModel):
    object: Literal["ticket"]
    number: int = Field(description="What people call the ticket (#1042): unique, given on create, read-only")
    subject: str
    description: str | None
    status: TicketStatus
    priority: TicketPriority
    channel: TicketChannel
    requester_id: uuid.UUID | None
    company_id: uuid.UUID | None
    assignee_id: uuid.UUID | None
    tags: list[str]
    custom_fields: CustomFields
    external_ids: ExternalIds
    sla_policy_id: uuid.UUID | None
    first_responded_at: dt.datetime | None
    solved_at: dt.datetime | None
    closed_at: dt.datetime | None
    first_response_due_at: dt.datetime | None
    resolution_due_at: dt.datetime | None
    first_response_breached_at: dt.datetime | None
    resolution_breached_at: dt.datetime | None
    sla_paused_at: dt.datetime | None = Field(
        description="Since when the resolution clock stands still (pending, on hold, solved)"
    )
    sla_paused_seconds: int = Field(description="Paused time already added to resolution_due_at")


CommentAuthorType = TypeAliasType("CommentAuthorType", Literal["agent", "requester"])


class TicketCommentCreate(WriteModel):
    body: LongText = Field(min_length=1)
    public: bool = True
    author_type: CommentAuthorType = Field(
        "agent", description="agent (a user of the CRM, or the API key) or requester (the ticket's contact)"
    )
    author_id: uuid.UUID | None = Field(
        None, description="agent: the user's id (unset: the API key); requester: the requester's contact id"
    )


class TicketComment(ReadModel):
    object: Literal["ticket_comment"]
    ticket_id: uuid.UUID
    body: str
    public: bool
    author_type: CommentAuthorType
    author_id: uuid.UUID | None
    api_key_id: uuid.UUID | None
