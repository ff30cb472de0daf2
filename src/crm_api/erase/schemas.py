"""The erase receipt, and what ``contact.erased`` carries."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field


class ErasedContact(BaseModel):
    """All a ``contact.erased`` event holds as ``data.object``: the id, no personal data."""

    id: uuid.UUID
    object: Literal["contact"]


class ErasureCounts(BaseModel):
    contacts: int = Field(
        description="the contact row: personal fields, tags, custom fields, consent cleared"
    )
    external_ids: int = Field(description="external id registry rows removed")
    activities_scrubbed: int = Field(description="activities linked to this contact alone: subject and body")
    activities_unlinked: int = Field(description="activities shared with other contacts: this id unlinked")
    ticket_comments: int = Field(description="comments the contact wrote as requester: body emptied")
    events: int = Field(description="stored event payloads with personal fields set to null")
    webhook_attempts: int = Field(description="webhook attempt response bodies about those events removed")
    idempotency_keys: int = Field(description="stored Idempotency-Key responses with personal values nulled")


class Erasure(BaseModel):
    """The receipt of a GDPR erase."""

    object: Literal["erasure"]
    contact: ErasedContact
    erased_at: dt.datetime
    request_id: str | None
    counts: ErasureCounts
