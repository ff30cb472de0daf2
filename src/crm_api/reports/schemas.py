"""The reports' answers as the OpenAPI document describes them (the routes build plain dicts; these are
the contract, and a test compares each answer with its schema)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from ..pipelines.schemas import StageKind

Interval = TypeAliasType("Interval", Literal["day", "week", "month", "quarter", "year"])
WinRateGroup = TypeAliasType("WinRateGroup", Literal["owner", "pipeline", "source"])

MoneyByCurrency = Field(
    description='Per ISO 4217 currency, a decimal string with two places ({"USD": "1200.00"}); currencies '
    "are never summed together"
)
Rate = Field(description="0..1, rounded to 4 places; null when nothing was counted")
Days = Field(description="Days, rounded to 2 places; null when nothing was counted")


class PipelineStageRow(BaseModel):
    stage_id: uuid.UUID
    name: str
    kind: StageKind
    probability: float
    deal_count: int
    amount: dict[str, str] = MoneyByCurrency
    weighted_amount: dict[str, str] = Field(description="amount times the stage's probability, per currency")


class PipelineTotals(BaseModel):
    deal_count: int
    amount: dict[str, str] = MoneyByCurrency
    weighted_amount: dict[str, str] = MoneyByCurrency


class PipelineReport(BaseModel):
    object: Literal["pipeline_report"]
    pipeline_id: uuid.UUID
    pipeline_name: str
    owner_id: uuid.UUID | None
    as_of: dt.datetime | None = Field(description="The moment asked about; null: now")
    note: str | None = Field(description="With as_of: what is today's rather than then's")
    stages: list[PipelineStageRow] = Field(description="The pipeline's stages in order")
    totals: PipelineTotals


class ForecastPeriod(BaseModel):
    period_start: dt.date = Field(description="The first day of the bucket, in tz")
    owner_id: uuid.UUID | None = Field(None, description="With group_by=owner; null: deals without owner")
    won_count: int = Field(description="Deals won (closed_at) in the bucket")
    won: dict[str, str] = MoneyByCurrency
    weighted: dict[str, str] = Field(
        description="Open deals expected to close in the bucket, amount times their stage's probability"
    )
    best_case: dict[str, str] = Field(description="Open deals expected to close in the bucket, full amount")
    deal_count: int = Field(description="Open deals expected to close in the bucket")


class Unscheduled(BaseModel):
    deal_count: int
    best_case: dict[str, str] = MoneyByCurrency
    weighted: dict[str, str] = MoneyByCurrency


class ForecastReport(BaseModel):
    object: Literal["forecast_report"]
    from_: dt.date = Field(alias="from")
    to: dt.date
    interval: Interval
    tz: str
    group_by: Literal["owner"] | None
    periods: list[ForecastPeriod] = Field(description="Every bucket of the period (and every owner found)")
    unscheduled: Unscheduled = Field(description="Open deals without an expected close date, counted once")


class WinRateGroupRow(BaseModel):
    group: str | None = Field(
        None, description="With group_by: the owner id, pipeline id or source (null: deals without one)"
    )
    won: int
    lost: int
    win_rate: float | None = Rate
    won_amount: dict[str, str] = MoneyByCurrency
    lost_reasons: dict[str, int] = Field(description="Lost deals per lost_reason ('unspecified' without one)")


class WinRateReport(BaseModel):
    object: Literal["win_rate_report"]
    from_: dt.date = Field(alias="from")
    to: dt.date
    tz: str
    group_by: WinRateGroup | None
    groups: list[WinRateGroupRow]


class DaysToWon(BaseModel):
    deal_count: int
    mean: float | None = Days
    median: float | None = Days
    p90: float | None = Days


class SalesCycleStage(BaseModel):
    stage_id: uuid.UUID
    name: str
    kind: StageKind
    entered: int = Field(description="Deals that entered the stage in the period")
    advanced: int | None = Field(
        description="Of those, deals that later entered an open stage further on or were won (open stages)"
    )
    conversion: float | None = Rate
    median_days_in_stage: float | None = Field(
        description="From entering to leaving (still there: until now); open stages only"
    )
    mean_days_in_stage: float | None = Days


class SalesCycleReport(BaseModel):
    object: Literal["sales_cycle_report"]
    pipeline_id: uuid.UUID
    pipeline_name: str
    from_: dt.date = Field(alias="from")
    to: dt.date
    tz: str
    days_to_won: DaysToWon = Field(description="Deals of the pipeline won in the period, creation to won")
    stages: list[SalesCycleStage]


ServiceGroup = TypeAliasType("ServiceGroup", Literal["priority", "assignee", "channel"])
Minutes = Field(description="Minutes, rounded to 2 places; null when nothing was counted")


class MinutesSummary(BaseModel):
    median: float | None = Minutes
    p90: float | None = Minutes


class ServiceGroupRow(BaseModel):
    group: str | None = Field(
        None,
        description="With group_by: the priority, assignee id or channel (null: tickets without assignee)",
    )
    created: int = Field(description="Tickets created in the period")
    resolved: int = Field(description="Of those, tickets solved since")
    first_response_minutes: MinutesSummary = Field(description="Creation to first public agent comment")
    resolution_minutes: MinutesSummary = Field(description="Creation to solved, in calendar minutes")
    first_response_sla_met: float | None = Field(
        description="Among tickets with a first response target whose outcome is known, the share met; 0..1"
    )
    resolution_sla_met: float | None = Field(
        description="Among tickets with a resolution target whose outcome is known, the share met; 0..1"
    )
    breaches: int = Field(description="Targets breached: first response and resolution, counted apart")


class ServiceReport(BaseModel):
    object: Literal["service_report"]
    from_: dt.date = Field(alias="from")
    to: dt.date
    tz: str
    group_by: ServiceGroup | None
    groups: list[ServiceGroupRow]


class LifetimeValue(BaseModel):
    customers: int = Field(description="Customers with purchases in the currency: those the figures are over")
    mean: str | None = Field(description="A decimal string with two places, in the report's currency")
    median: str | None
    p90: str | None


class Cohort(BaseModel):
    month: dt.date = Field(description="The month of the cohort's first purchase (its first day, in tz)")
    size: int
    active: list[int] = Field(
        description="Customers of the cohort who bought in each month from the first on, up to 12 and as_of"
    )


class CustomersReport(BaseModel):
    object: Literal["customers_report"]
    as_of: dt.datetime
    currency: str
    churn_days: int
    tz: str
    customers: int = Field(description="Live contacts with a paid order or a won deal by as_of")
    lifetime_value: LifetimeValue
    repeat_rate: float | None = Field(description="Share of customers with two purchases or more; 0..1")
    churned: int = Field(description="Customers whose last purchase is older than churn_days before as_of")
    churn_rate: float | None = Rate
    cohorts: list[Cohort] = Field(description="The 12 months up to as_of's, oldest first")


class LeadConversionPeriod(BaseModel):
    period_start: dt.date = Field(description="The first day of the bucket, in tz")
    source: str | None = Field(None, description="With group_by=source: the contacts' source (null: none)")
    leads: int = Field(
        description="Contacts whose first entry into the lead stage in the period is in the bucket"
    )
    converted: int = Field(description="Of those, contacts that became customers since")
    conversion_rate: float | None = Rate
    median_days_to_customer: float | None = Days


class LeadConversionReport(BaseModel):
    object: Literal["lead_conversion_report"]
    from_: dt.date = Field(alias="from")
    to: dt.date
    interval: Interval
    tz: str
    group_by: Literal["source"] | None
    periods: list[LeadConversionPeriod] = Field(
        description="Every bucket of the period (and every source found)"
    )


class AttributionSource(BaseModel):
    source: str | None = Field(description="The contacts' acquisition source; null for contacts without one")
    contacts: int = Field(description="Contacts created in the period")
    leads: int = Field(description="Of those, contacts that were leads at some point")
    customers: int = Field(description="Of those, contacts with a won deal or a paid order")
    won_amount: dict[str, str] = Field(
        description="Their won deals' amounts (as primary contact), per currency"
    )


class AttributionReport(BaseModel):
    object: Literal["attribution_report"]
    from_: dt.date = Field(alias="from")
    to: dt.date
    tz: str
    sources: list[AttributionSource]
