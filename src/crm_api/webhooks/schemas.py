"""Webhook endpoint bodies, and endpoints, deliveries and attempts as the API returns them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field
from typing_extensions import TypeAliasType

from ..events.types import pattern_problem
from ..resources.schemas import ShortText, UtcDatetime, WriteModel


def _known(pattern: str) -> str:
    """A subscription that could never match is refused, not stored to silently receive nothing."""
    problem = pattern_problem(pattern)
    if problem:
        raise ValueError(problem)
    return pattern


EventPattern = Annotated[
    str,
    Field(min_length=1, max_length=100, pattern=r"^(\*|[a-z_]+\.(\*|[a-z_]+))$"),
    AfterValidator(_known),
]
Url = Annotated[str, Field(min_length=8, max_length=2000, pattern=r"^https?://")]
EndpointOrdering = TypeAliasType("EndpointOrdering", Literal["none", "per_object"])
EndpointStatus = TypeAliasType("EndpointStatus", Literal["enabled", "disabled"])
DeliveryStatus = TypeAliasType("DeliveryStatus", Literal["pending", "succeeded", "failed"])


class EndpointCreate(WriteModel):
    url: Url
    event_types: list[EventPattern] = Field(
        min_length=1, max_length=100, examples=[["contact.*", "deal.won"]]
    )
    description: ShortText | None = None
    ordering: EndpointOrdering = "none"


class EndpointUpdate(WriteModel):
    url: Url | None = None
    event_types: list[EventPattern] | None = Field(None, min_length=1, max_length=100)
    description: ShortText | None = None
    ordering: EndpointOrdering | None = None
    status: EndpointStatus | None = Field(None, description="enabled re-enables a disabled endpoint")


class Endpoint(BaseModel):
    object: Literal["webhook_endpoint"]
    id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str]
    ordering: EndpointOrdering
    status: EndpointStatus
    disabled_reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int


class EndpointWarning(BaseModel):
    code: Literal["overlapping_subscription"] = Field(
        description="overlapping_subscription: another endpoint already sends some of these event types "
        "to the same URL, so each such event reaches the URL once per endpoint"
    )
    message: str
    endpoint_id: uuid.UUID = Field(description="the other endpoint")
    event_types: list[str] = Field(description="the event types both endpoints receive")


class EndpointSaved(Endpoint):
    warnings: list[EndpointWarning] = Field(
        description="what this write allowed but may not have meant (empty when nothing)"
    )


class EndpointWithSecret(EndpointSaved):
    secret: str = Field(description="whsec_ signing secret; shown on create and rotate only")


class EndpointList(BaseModel):
    object: Literal["list"]
    data: list[Endpoint]
    has_more: bool
    next_cursor: str | None


class Attempt(BaseModel):
    attempted_at: dt.datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    response_body: str | None


class Delivery(BaseModel):
    object: Literal["webhook_delivery"]
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    event_sequence: int
    status: DeliveryStatus
    attempts: int
    next_attempt_at: dt.datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    attempt_log: list[Attempt] | None = None


class DeliveryList(BaseModel):
    object: Literal["list"]
    data: list[Delivery]
    has_more: bool
    next_cursor: str | None


class RecoverRequest(WriteModel):
    since: UtcDatetime


class RecoverResult(BaseModel):
    object: Literal["recovery"]
    requeued: int
