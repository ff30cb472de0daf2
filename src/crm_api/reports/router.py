"""``GET /v1/reports/...``: pipeline, forecast, win rate, sales cycle, service, customers, lead conversion,
attribution. Scope ``reports:read``.

Each route takes a ``Report`` (or ``PeriodReport``) dependency from ``query.py``, which declares the shared
parameters typed for the OpenAPI document and reads and checks them; a route declares only its own.

(No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations at definition.)
"""

import asyncio
import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from ..errors import field_error
from ..http import problems
from ..routing import Route
from . import acquisition, build, customers, params, sales, service
from .query import (
    AsOf,
    ByOwner,
    BySource,
    ChurnDays,
    Currency,
    Interval,
    OnlyPipeline,
    OwnerId,
    PeriodReport,
    PipelineId,
    Report,
    ServiceGroup,
    Tz,
    WinRateGroup,
    period_request,
    report_request,
)
from .render import csv_content
from .schemas import (
    AttributionReport,
    CustomersReport,
    ForecastReport,
    LeadConversionReport,
    PipelineReport,
    SalesCycleReport,
    ServiceReport,
    WinRateReport,
)

router = APIRouter(prefix="/v1/reports", tags=["reports"], route_class=Route)
Asked = Annotated[Report, Depends(report_request)]
Period = Annotated[PeriodReport, Depends(period_request)]


async def _pipeline(report: Report, pipeline_id: uuid.UUID | None) -> dict[str, Any]:
    found = await sales.pipeline(report.conn, report.workspace_id, pipeline_id)
    if found is None:
        raise field_error("/pipeline_id", "no such pipeline in this workspace")
    return found


@router.get(
    "/pipeline",
    operation_id="reports_pipeline",
    response_model=PipelineReport,
    responses={**problems(422), **csv_content("stage_id,name,kind,probability,deal_count,amount.USD,...")},
    summary="Report the pipeline by stage, now or at a past moment",
    description=(
        "Per stage of the pipeline, in stage order: deals, their amount and the amount weighted by the "
        "stage's probability, per currency; and the totals. `as_of` places each deal in the stage it was in "
        "at that moment (from the stage history), counting deals created by then and not archived then "
        "(one restored since included); amounts and probabilities are today's. `Accept: text/csv` answers "
        "one line per stage."
    ),
)
async def pipeline_report(
    report: Asked, pipeline_id: PipelineId = None, owner_id: OwnerId = None, as_of: AsOf = None
) -> Response:
    owner, moment = report.uuid("owner_id"), params.timestamp(report.query, "as_of")
    found = await _pipeline(report, report.uuid("pipeline_id"))
    conn, ws = report.conn, report.workspace_id
    stages, counts = await asyncio.gather(
        sales.stages(conn, ws, found["id"]),
        sales.pipeline_counts(conn, ws, found["id"], owner, moment, report.archived),
    )
    return report.respond(build.pipeline(found, stages, counts, moment, owner), "stages")


@router.get(
    "/forecast",
    operation_id="reports_forecast",
    response_model=ForecastReport,
    responses={**problems(422), **csv_content("period_start,won_count,won.USD,weighted.USD,...")},
    summary="Forecast what will close, per period",
    description=(
        "Per bucket of the period (`interval`, in `tz`): `won`, deals won with closed_at in the bucket; "
        "`best_case`, open deals expected to close in it (expected_close_date); `weighted`, the same times "
        "their stage's probability; `deal_count`, how many. Open deals without an expected close date are "
        "counted once in `unscheduled`. Every pipeline unless `pipeline_id`; `group_by=owner` splits each "
        "bucket by owner. `Accept: text/csv` answers one line per bucket (and owner)."
    ),
)
async def forecast_report(
    report: Period,
    pipeline_id: OnlyPipeline = None,
    interval: Interval = None,
    group_by: ByOwner = None,
) -> Response:
    by_owner = report.choice("group_by", ("owner",)) == "owner"
    chosen = report.uuid("pipeline_id")
    if chosen is not None:
        await _pipeline(report, chosen)
    rows = await sales.forecast(
        report.conn, report.workspace_id, chosen, by_owner, report.archived, report.bounds
    )
    return report.respond(build.forecast(rows, report.period, by_owner), "periods")


@router.get(
    "/win-rate",
    operation_id="reports_win_rate",
    response_model=WinRateReport,
    responses={
        **problems(422),
        **csv_content("group,won,lost,win_rate,won_amount.USD,lost_reasons.price,..."),
    },
    summary="Report won and lost deals and the win rate",
    description=(
        "Deals closed in the period (closed_at, days in `tz`): `won`, `lost`, `win_rate` = won / (won + "
        "lost), `won_amount` per currency and `lost_reasons` (lost deals per reason). `group_by` splits by "
        "`owner`, `pipeline` or `source`. `Accept: text/csv` answers one line per group."
    ),
)
async def win_rate_report(report: Period, group_by: WinRateGroup = None) -> Response:
    group = report.choice("group_by", sales.WIN_RATE_GROUPS)
    rows = await sales.win_rate(report.conn, report.workspace_id, group, report.archived, report.bounds)
    return report.respond(build.win_rate(rows, report.period, group), "groups")


@router.get(
    "/sales-cycle",
    operation_id="reports_sales_cycle",
    response_model=SalesCycleReport,
    responses={**problems(422), **csv_content("stage_id,name,kind,entered,advanced,conversion,...")},
    summary="Report how long deals take and where they stall",
    description=(
        "For the deals of the pipeline won in the period: days from creation to won (`mean`, `median`, "
        "`p90`). Per stage: `entered`, deals that entered it in the period; `advanced`, those of them that "
        "later entered an open stage further on or were won (a loss is not an advance); `conversion`; and "
        "the median and mean days in the stage (deals still there count until now). `Accept: text/csv` "
        "answers one line per stage."
    ),
)
async def sales_cycle_report(report: Period, pipeline_id: PipelineId = None) -> Response:
    found = await _pipeline(report, report.uuid("pipeline_id"))
    conn, ws = report.conn, report.workspace_id
    stages, (won, per_stage) = await asyncio.gather(
        sales.stages(conn, ws, found["id"]),
        sales.sales_cycle(conn, ws, found["id"], report.archived, report.bounds),
    )
    return report.respond(build.sales_cycle(found, stages, won, per_stage, report.period), "stages")


@router.get(
    "/service",
    operation_id="reports_service",
    response_model=ServiceReport,
    responses={**problems(422), **csv_content("group,created,resolved,first_response_minutes.median,...")},
    summary="Report how support keeps its promises",
    description=(
        "For tickets created in the period (days in `tz`): `created`, `resolved` (solved since), minutes to "
        "the first response and to resolution (`median`, `p90`), the share of SLA targets met among tickets "
        "with a target whose outcome is known (`first_response_sla_met`, `resolution_sla_met`) and "
        "`breaches`. `group_by` splits by `priority`, `assignee` or `channel`. `Accept: text/csv` answers "
        "one line per group."
    ),
)
async def service_report(
    report: Period,
    group_by: ServiceGroup = None,
) -> Response:
    group = report.choice("group_by", service.SERVICE_GROUPS)
    rows = await service.service(report.conn, report.workspace_id, group, report.archived, report.bounds)
    return report.respond(build.service(rows, report.period, group), "groups")


@router.get(
    "/customers",
    operation_id="reports_customers",
    response_model=CustomersReport,
    responses={**problems(422), **csv_content("month,size,active.0,active.1,...")},
    summary="Report what customers are worth and who stays",
    description=(
        "Customers are contacts with a paid or fulfilled order or a won deal by `as_of` (default now), "
        "live at `as_of`: one archived since counts, one archived then does not, restored since or not "
        "(unless `include_archived=true`); a won deal counts if it was won at `as_of` (from the stage "
        "history); a merged contact's purchases are its survivor's. Lifetime value in "
        "`currency` (default USD: `mean`, `median`, `p90`, over the customers who bought in it), "
        "`repeat_rate` (two purchases or more), `churned` (last purchase older than `churn_days`, "
        "default 180, before `as_of`) and `churn_rate`, and monthly `cohorts` by first purchase for the "
        "12 months up to `as_of` (months in `tz`): `size` and `active` per month since. `Accept: "
        "text/csv` answers one line per cohort."
    ),
)
async def customers_report(
    report: Asked,
    currency: Currency = None,
    churn_days: ChurnDays = None,
    as_of: AsOf = None,
    tz: Tz = None,
) -> Response:
    query = report.query
    zone = params.zone(query)
    given = params.timestamp(query, "as_of")
    moment = given or dt.datetime.now(dt.UTC)
    days = params.integer(query, "churn_days", 180, 1, 3650)
    asked = {
        "as_of": moment,
        "currency": params.currency(query, "USD"),
        "churn_days": days,
        "tz": zone.key,
    }
    try:
        window = customers.cohort_window(moment, zone.key)
        churn_before = moment - dt.timedelta(days=days)
    except (ValueError, OverflowError):
        raise field_error("/as_of", "too close to the ends of the calendar") from None
    months = window["months"]
    values = {**asked, "churn_before": churn_before, **window}
    summary, cohort_rows = await customers.customers(
        report.conn, report.workspace_id, report.archived, values, then=given is not None
    )
    return report.respond(build.customers(summary, cohort_rows, asked, months), "cohorts")


@router.get(
    "/lead-conversion",
    operation_id="reports_lead_conversion",
    response_model=LeadConversionReport,
    responses={**problems(422), **csv_content("period_start,leads,converted,conversion_rate,...")},
    summary="Report how many leads become customers",
    description=(
        "Per bucket of the period (`interval`, in `tz`): `leads`, contacts that entered the lead lifecycle "
        "stage in it (the first time in the period); `converted`, those of them that entered the customer "
        "stage since; `conversion_rate` and `median_days_to_customer`. Read from the contacts' lifecycle "
        "history, kept for good. `group_by=source` splits by the contacts' acquisition source. "
        "`Accept: text/csv` answers one line per bucket (and source)."
    ),
)
async def lead_conversion_report(
    report: Period, interval: Interval = None, group_by: BySource = None
) -> Response:
    by_source = report.choice("group_by", ("source",)) == "source"
    rows = await acquisition.lead_conversion(
        report.conn, report.workspace_id, by_source, report.archived, report.bounds
    )
    return report.respond(build.lead_conversion(rows, report.period, by_source), "periods")


@router.get(
    "/attribution",
    operation_id="reports_attribution",
    response_model=AttributionReport,
    responses={**problems(422), **csv_content("source,contacts,leads,customers,won_amount.USD,...")},
    summary="Report which sources bring customers",
    description=(
        "Per acquisition `source` of the contacts created in the period (days in `tz`): `contacts`, "
        "`leads` (those that were leads at some point), `customers` (those with a won deal or a paid "
        "order) and `won_amount`, their won deals per currency. Contacts without a source are the null "
        "source. `Accept: text/csv` answers one line per source."
    ),
)
async def attribution_report(report: Period) -> Response:
    counts, won = await acquisition.attribution(
        report.conn, report.workspace_id, report.archived, report.bounds
    )
    return report.respond(build.attribution(counts, won, report.period), "sources")
