"""Activity bodies and the activity as the API returns it."""

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
    Text,
    UtcDatetime,
    WriteModel,
    _no_nul,
    not_clearable,
)

ActivityType = TypeAliasType("ActivityType", Literal["note", "call", "email", "meeting", "task"])
ActivityDirection = TypeAliasType("ActivityDirection", Literal["inbound", "outbound"])
ActivityPriority = TypeAliasType("ActivityPriority", Literal["low", "normal", "high"])


def _unique(ids: list[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(ids))  # a record linked twice is linked once; order kept


LinkIds = Annotated[list[uuid.UUID], Field(max_length=100), AfterValidator(_unique)]
Body = Annotated[str, StringConstraints(max_length=65_536), AfterValidator(_no_nul)]
Duration = Annotated[int, Field(ge=0, le=366 * 86_400)]

_OCCURRED = "When it happened. Defaults to the time of the write for every type but task; a task without one "
_OCCURRED += "takes its completed_at."


class ActivityCreate(WriteModel):
    """direction: calls and emails only; duration_seconds: calls and meetings only; due_at, completed_at
    and priority: tasks only. A field on the wrong type is a 422 naming it."""

    type: ActivityType
    subject: Text | None = None
    body: Body | None = None
    occurred_at: UtcDatetime | None = Field(None, description=_OCCURRED)
    direction: ActivityDirection | None = None
    duration_seconds: Duration | None = None
    due_at: UtcDatetime | None = None
    completed_at: UtcDatetime | None = Field(None, description="Setting it completes a task")
    priority: ActivityPriority | None = None
    owner_id: MemberRef | None = None
    contact_ids: LinkIds = []
    company_ids: LinkIds = []
    deal_ids: LinkIds = []
    ticket_ids: LinkIds = []
    custom_fields: CustomFields = {}
    external_ids: ExternalIds = {}


class ActivityUpdate(WriteModel):
    """Absent fields stay as they are; ``null`` clears. The type may change when the fields the new type
    does not have are cleared in the same request."""

    type: ActivityType | None = not_clearable()
    subject: Text | None = None
    body: Body | None = None
    occurred_at: UtcDatetime | None = None
    direction: ActivityDirection | None = None
    duration_seconds: Duration | None = None
    due_at: UtcDatetime | None = None
    completed_at: UtcDatetime | None = Field(None, description="Set to complete a task, null to reopen it")
    priority: ActivityPriority | None = None
    owner_id: MemberRef | None = None
    contact_ids: LinkIds | None = None
    company_ids: LinkIds | None = None
    deal_ids: LinkIds | None = None
    ticket_ids: LinkIds | None = None
    custom_fields: CustomFields | None = None
    external_ids: ExternalIds | None = None


class Activity(ReadModel):
    object: Literal["activity"]
    type: ActivityType
    subject: str | None
    body: str | None
    occurred_at: dt.datetime | None
    direction: ActivityDirection | None
    duration_seconds: int | None
    due_at: dt.datetime | None
    completed_at: dt.datetime | None
    priority: ActivityPriority | None
    owner_id: uuid.UUID | None
    contact_ids: list[uuid.UUID]
    company_ids: list[uuid.UUID]
    deal_ids: list[uuid.UUID]
    ticket_ids: list[uuid.UUID]
    custom_fields: CustomFields
    external_ids: ExternalIds
