"""Company bodies and the company as the API returns it."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field

from ..resources.schemas import (
    Count,
    Currency,
    CustomFields,
    ExternalIds,
    MemberRef,
    Money,
    MoneyOut,
    ReadModel,
    ShortText,
    Tags,
    WriteModel,
    not_clearable,
)

Domain = Field(None, min_length=1, max_length=253)


class CompanyCreate(WriteModel):
    name: ShortText = Field(min_length=1)
    domain: str | None = Domain
    industry: ShortText | None = None
    employee_count: Count | None = None
    annual_revenue: Money | None = None
    currency: Currency | None = None
    owner_id: MemberRef | None = None
    tags: Tags = []
    custom_fields: CustomFields = {}
    external_ids: ExternalIds = {}


class CompanyUpdate(WriteModel):
    """Absent fields stay as they are; ``null`` clears."""

    name: ShortText | None = not_clearable(min_length=1)
    domain: str | None = Domain
    industry: ShortText | None = None
    employee_count: Count | None = None
    annual_revenue: Money | None = None
    currency: Currency | None = None
    owner_id: MemberRef | None = None
    tags: Tags | None = None
    custom_fields: CustomFields | None = None
    external_ids: ExternalIds | None = None


class Company(ReadModel):
    object: Literal["company"]
    name: str
    domain: str | None
    industry: str | None
    employee_count: int | None
    annual_revenue: MoneyOut | None
    currency: str | None
    owner_id: uuid.UUID | None
    tags: list[str]
    custom_fields: CustomFields
    external_ids: ExternalIds
    merged_into: uuid.UUID | None = Field(
        description="Set when this record was merged into another (then archived); GET answers 301 there"
    )
