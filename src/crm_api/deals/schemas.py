"""Deal bodies and the deal as the API returns it. ``status`` and ``closed_at`` follow the stage and are
not writable."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from ..resources.schemas import (
    Currency,
    CustomFields,
    ExternalIds,
    MemberRef,
    Money,
    MoneyOut,
    ReadModel,
    ShortText,
    Tags,
    Text,
    WriteModel,
    not_clearable,
)

DealStatus = TypeAliasType("DealStatus", Literal["open", "won", "lost"])
_CONTACT_IDS = "Associated contacts; the primary contact_id is always one of them"


class DealCreate(WriteModel):
    name: ShortText = Field(min_length=1)
    amount: Money | None = None
    currency: Currency | None = Field(None, description="ISO 4217; required with an amount")
    pipeline_id: uuid.UUID | None = Field(None, description="Omitted: the workspace's default pipeline")
    stage_id: uuid.UUID | None = Field(None, description="Omitted: the pipeline's first open stage")
    expected_close_date: dt.date | None = None
    owner_id: MemberRef | None = None
    contact_id: uuid.UUID | None = Field(None, description="The primary contact")
    company_id: uuid.UUID | None = None
    contact_ids: list[uuid.UUID] = Field([], max_length=100, description=_CONTACT_IDS)
    source: ShortText | None = None
    lost_reason: Text | None = None
    tags: Tags = []
    custom_fields: CustomFields = {}
    external_ids: ExternalIds = {}


class DealUpdate(WriteModel):
    """Absent fields stay as they are; ``null`` clears. A new ``stage_id`` moves the deal (and is recorded in
    its stage history); a new ``pipeline_id`` without a stage lands on that pipeline's first open stage."""

    name: ShortText | None = not_clearable(min_length=1)
    amount: Money | None = None
    currency: Currency | None = None
    pipeline_id: uuid.UUID | None = not_clearable()
    stage_id: uuid.UUID | None = not_clearable()
    expected_close_date: dt.date | None = None
    owner_id: MemberRef | None = None
    contact_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    contact_ids: list[uuid.UUID] | None = Field(None, max_length=100, description=_CONTACT_IDS)
    source: ShortText | None = None
    lost_reason: Text | None = None
    tags: Tags | None = None
    custom_fields: CustomFields | None = None
    external_ids: ExternalIds | None = None


class Deal(ReadModel):
    object: Literal["deal"]
    name: str
    amount: MoneyOut | None
    currency: str | None
    pipeline_id: uuid.UUID
    stage_id: uuid.UUID
    status: DealStatus = Field(description="The kind of the deal's stage")
    expected_close_date: dt.date | None
    owner_id: uuid.UUID | None
    contact_id: uuid.UUID | None
    company_id: uuid.UUID | None
    contact_ids: list[uuid.UUID]
    source: str | None
    lost_reason: str | None
    closed_at: dt.datetime | None = Field(description="When the deal was won or lost; null while open")
    tags: list[str]
    custom_fields: CustomFields
    external_ids: ExternalIds


class StageChange(BaseModel):
    object: Literal["deal_stage_change"]
    id: uuid.UUID
    deal_id: uuid.UUID
    pipeline_id: uuid.UUID
    from_stage_id: uuid.UUID | None = Field(description="null for the stage the deal was created in")
    to_stage_id: uuid.UUID
    changed_at: dt.datetime
    left_at: dt.datetime | None = Field(description="When the deal moved on; null for its current stage")
    seconds_in_stage: float = Field(description="Until left_at, or until now for the current stage")
    actor: str


class StageChangeList(BaseModel):
    object: Literal["list"]
    data: list[StageChange]
    has_more: bool
    next_cursor: str | None
