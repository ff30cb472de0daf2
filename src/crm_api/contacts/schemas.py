"""Contact bodies and the contact as the API returns it."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import Field
from typing_extensions import TypeAliasType

from ..emails import Email
from ..resources.schemas import (
    CustomFields,
    ExternalIds,
    MemberRef,
    ReadModel,
    ShortText,
    Tags,
    Text,
    UtcDatetime,
    WriteModel,
)

LifecycleStage = TypeAliasType(
    "LifecycleStage",
    Literal[
        "subscriber",
        "lead",
        "marketing_qualified",
        "sales_qualified",
        "opportunity",
        "customer",
        "evangelist",
        "other",
    ],
)
Phone = Field(None, max_length=50, pattern=r"^\+?[0-9 ().\-]{3,50}$")


class ContactCreate(WriteModel):
    email: Email | None = None
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    phone: str | None = Phone
    title: ShortText | None = None
    lifecycle_stage: LifecycleStage | None = None
    company_id: uuid.UUID | None = None
    owner_id: MemberRef | None = None
    tags: Tags = []
    custom_fields: CustomFields = {}
    external_ids: ExternalIds = {}
    marketing_consent: bool = False
    marketing_consent_at: UtcDatetime | None = None
    marketing_consent_source: ShortText | None = None
    source: ShortText | None = Field(None, description="Where the contact was acquired, such as newsletter")
    source_detail: Text | None = Field(None, description="More about the source, such as a UTM campaign")


class ContactUpdate(WriteModel):
    """Absent fields stay as they are; ``null`` clears."""

    email: Email | None = None
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    phone: str | None = Phone
    title: ShortText | None = None
    lifecycle_stage: LifecycleStage | None = None
    company_id: uuid.UUID | None = None
    owner_id: MemberRef | None = None
    tags: Tags | None = None
    custom_fields: CustomFields | None = None
    external_ids: ExternalIds | None = None
    marketing_consent: bool | None = None
    marketing_consent_at: UtcDatetime | None = None
    marketing_consent_source: ShortText | None = None
    source: ShortText | None = Field(None, description="Where the contact was acquired, such as newsletter")
    source_detail: Text | None = Field(None, description="More about the source, such as a UTM campaign")


class Contact(ReadModel):
    """A person. ``POST /v1/contacts/{id}/erase`` (GDPR) clears every personal field, the tags, custom
    fields and external ids, and the marketing consent (``marketing_consent`` false, its ``_at`` and
    ``_source`` null); the contact keeps its id, is archived and shows ``erased_at``."""

    object: Literal["contact"]
    email: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    title: str | None
    lifecycle_stage: LifecycleStage | None
    company_id: uuid.UUID | None
    owner_id: uuid.UUID | None
    tags: list[str]
    custom_fields: CustomFields
    external_ids: ExternalIds
    marketing_consent: bool
    marketing_consent_at: dt.datetime | None
    marketing_consent_source: str | None
    erased_at: dt.datetime | None = Field(
        description="When the personal data was erased; an erased contact takes no further writes"
    )
    lifetime_value: dict[str, str] = Field(
        description="Won deal amounts summed per currency (decimal strings); kept by order writes, read-only"
    )
    order_count: int = Field(description="Orders linked to this contact; read-only")
    score: int = Field(
        0,
        description="The lead score: the points of the scoring rules the contact meets (`GET .../score` "
        "explains it), kept current by the workers within seconds of a change; read-only",
    )
    merged_into: uuid.UUID | None = Field(
        description="Set when this record was merged into another (then archived); GET answers 301 there"
    )
    source: str | None = Field(description="Where the contact was acquired (the attribution report's groups)")
    source_detail: str | None = Field(description="More about the source, such as a UTM campaign")
