"""``GET /v1/reports/...``: pipeline, forecast, win rate, sales cycle. Scope ``reports:read``.

Each route declares its query parameters for the OpenAPI document, but reads them from the query string
through ``params.py``, so that every bad value is a 422 whose pointer names the parameter (``/from``), and
an unknown parameter is refused rather than ignored.

(No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations at definition.)
"""

import asyncio
import datetime as dt
import uuid
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query, Request, Response

from ..auth import Principal, require
from ..deps import read_pool
from ..errors import field_error
from ..http import context, problems
from ..routing import Route
from . import acquisition, build, customers, params, sales, service
from .render import csv_content, respond
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
Reader = Annotated[Principal, require("reports:read")]

PipelineId = Annotated[
    str | None,
    Query(max_length=100, description="A pipeline's id; default: the workspace's default pipeline"),
]
From = Annotated[
    str | None,
    Query(
        alias="from",
        max_length=100,
        description="First day (YYYY-MM-DD, in tz); default: 1 January this year",
    ),
]
To = Annotated[
    str | None, Query(max_length=100, description="Last day, inclusive; default: 31 December this year")
]
Tz = Annotated[str | None, Query(max_length=100, description="IANA time zone the days are in; default UTC")]
Archived = Annotated[
    str | None, Query(max_length=10, description="true: count archived deals too; default false")
]
_PERIOD = ("from", "to", "tz", "include_archived")


async def _pipeline(conn: asyncpg.Pool, ws: uuid.UUID, query: dict[str, str]) -> dict[str, Any]:
    pipeline_id = params.uuid_param(query, "pipeline_id")
    found = await sales.pipeline(conn, ws, pipeline_id)
    if found is None:
        raise field_error("/pipeline_id", "no such pipeline in this workspace")
    return found


def _bounds(period: params.Period) -> dict[str, Any]:
    lower, upper = period.bounds()
    return {
        "lower": lower,
        "upper": upper,
        "first_day": period.start,
        "last_day": period.end,
        "unit": period.interval,
        "tz": period.tz_name,
    }


@router.get(
    "/pipeline",
    operation_id="reports_pipeline",
    response_model=PipelineReport,
    responses={**problems(422), **csv_content("stage_id,name,kind,probability,deal_count,amount.USD,...")},
    summary="Report the pipeline by stage, now or at a past moment",
    description=(
        "Per stage of the pipeline, in stage order: deals, their amount and the amount weighted by the "
        "stage's probability, per currency; and the totals. `as_of` places each deal in the stage it was in "
        "at that moment (from the stage history), counting deals created by then and not archived by then; "
        "amounts and probabilities are today's. `Accept: text/csv` answers one line per stage."
    ),
)
async def pipeline_report(
    request: Request,
    principal: Reader,
    pipeline_id: PipelineId = None,
    owner_id: Annotated[str | None, Query(max_length=100, description="Only this owner's deals")] = None,
    as_of: Annotated[
        str | None, Query(max_length=100, description="An RFC 3339 timestamp in the past; default: now")
    ] = None,
    include_archived: Archived = None,
) -> Response:
    conn = read_pool(request)
    query = dict(request.query_params)
    params.check_known(query, ("pipeline_id", "owner_id", "as_of", "include_archived"))
    owner = params.uuid_param(query, "owner_id")
    moment = params.timestamp(query, "as_of")
    archived = params.flag(query, "include_archived")
    ws = context(request, principal).workspace_id
    found = await _pipeline(conn, ws, query)
    stages, counts = await asyncio.gather(
        sales.stages(conn, ws, found["id"]),
        sales.pipeline_counts(conn, ws, found["id"], owner, moment, archived),
    )
    return respond(request, build.pipeline(found, stages, counts, moment, owner), "stages")


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
    request: Request,
    principal: Reader,
    pipeline_id: Annotated[
        str | None, Query(max_length=100, description="Only this pipeline's deals")
    ] = None,
    from_: From = None,
    to: To = None,
    interval: Annotated[
        str | None, Query(max_length=20, description="day, week, month (default), quarter or year")
    ] = None,
    tz: Tz = None,
    group_by: Annotated[str | None, Query(max_length=20, description="owner")] = None,
    include_archived: Archived = None,
) -> Response:
    conn = read_pool(request)
    query = dict(request.query_params)
    params.check_known(query, ("pipeline_id", "interval", "group_by", *_PERIOD))
    period = params.period(query, "month")
    by_owner = params.choice(query, "group_by", ("owner",), None) == "owner"
    pipeline_id_ = params.uuid_param(query, "pipeline_id")
    ws = context(request, principal).workspace_id
    if pipeline_id_ is not None and await sales.pipeline(conn, ws, pipeline_id_) is None:
        raise field_error("/pipeline_id", "no such pipeline in this workspace")
    archived = params.flag(query, "include_archived")
    rows = await sales.forecast(conn, ws, pipeline_id_, by_owner, archived, _bounds(period))
    return respond(request, build.forecast(rows, period, by_owner), "periods")


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
async def win_rate_report(
    request: Request,
    principal: Reader,
    from_: From = None,
    to: To = None,
    tz: Tz = None,
    group_by: Annotated[str | None, Query(max_length=20, description="owner, pipeline or source")] = None,
    include_archived: Archived = None,
) -> Response:
    conn = read_pool(request)
    query = dict(request.query_params)
    params.check_known(query, ("group_by", *_PERIOD))
    period = params.period(query, "month")
    group = params.choice(query, "group_by", sales.WIN_RATE_GROUPS, None)
    archived = params.flag(query, "include_archived")
    ws = context(request, principal).workspace_id
    rows = await sales.win_rate(conn, ws, group, archived, _bounds(period))
    return respond(request, build.win_rate(rows, period, group), "groups")


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
async def sales_cycle_report(
    request: Request,
    principal: Reader,
    pipeline_id: PipelineId = None,
    from_: From = None,
    to: To = None,
    tz: Tz = None,
    include_archived: Archived = None,
) -> Response:
    conn = read_pool(request)
    query = dict(request.query_params)
    params.check_known(query, ("pipeline_id", *_PERIOD))
    period = params.period(query, "month")
    archived = params.flag(query, "include_archived")
    ws = context(request, principal).workspace_id
    found = await _pipeline(conn, ws, query)
    bounds = _bounds(period)
    stages, (won, per_stage) = await asyncio.gather(
        sales.stages(conn, ws, found["id"]), sales.sales_cycle(conn, ws, found["id"], archived, bounds)
    )
    return respond(request, build.sales_cycle(found, stages, won, per_stage, period), "stages")


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
    request: Request,
    principal: Reader,
    from_: From = None,
    to: To = None,
    tz: Tz = None,
    group_by: Annotated[str | None, Query(max_length=20, description="priority, assignee or channel")] = None,
    include_archived: Archived = None,
) -> Response:
    conn = read_pool(request)
    query = dict(request.query_params)
    params.check_known(query, ("group_by", *_PERIOD))
    period = params.period(query, "month")
    group = params.choice(query, "group_by", service.SERVICE_GROUPS, None)
    archived = params.flag(query, "include_archived")
    ws = context(request, principal).workspace_id
    rows = await service.service(conn, ws, group, archived, _bounds(period))
    return respond(request, build.service(rows, period, group), "groups")


@router.get(
    "/customers",
    operation_id="reports_customers",
    response_model=CustomersReport,
    responses={**problems(422), **csv_content("month,size,active.0,active.1,...")},
    summary="Report what customers are worth and who stays",
    description=(
        "Customers are live contacts with a paid or fulfilled order or a won deal by `as_of` (default "
        "now). Lifetime value in `currency` (default USD: `mean`, `median`, `p90`, over the customers "
        "who bought in it), `repeat_rate` (two purchases or more), `churned` (last purchase older than "
        "`churn_days`, default 180, before `as_of`) and `churn_rate`, and monthly `cohorts` by first "
        "purchase for the 12 months up to `as_of` (months in `tz`): `size` and `active` per month since. "
        "`Accept: text/csv` "
        "answers one line per cohort."
    ),
)
async def customers_report(
    request: Request,
    principal: Reader,
    currency: Annotated[str | None, Query(max_length=10, description="ISO 4217; default USD")] = None,
    churn_days: Annotated[str | None, Query(max_length=10, description="1 to 3650; default 180")] = None,
    as_of: Annotated[
        str | None, Query(max_length=100, description="An RFC 3339 timestamp; default now")
    ] = None,
    tz: Tz = None,
    include_archived: Archived = None,
) -> Response:
    conn = read_pool(request)
    query = dict(request.query_params)
    params.check_known(query, ("currency", "churn_days", "as_of", "tz", "include_archived"))
    zone = params.zone(query)
    moment = params.timestamp(query, "as_of") or dt.datetime.now(dt.UTC)
    days = params.integer(query, "churn_days", 180, 1, 3650)
    asked = {
        "as_of": moment,
        "currency": params.currency(query, "USD"),
        "churn_days": days,
        "tz": zone.key,
    }
    try:
        months = params.months_back(moment.astimezone(zone).date(), 12)
        first = dt.datetime.combine(months[0], dt.time(), zone).astimezone(dt.UTC)
        churn_before = moment - dt.timedelta(days=days)
    except (ValueError, OverflowError):
        raise field_error("/as_of", "too close to the ends of the calendar") from None
    values = {**asked, "churn_before": churn_before, "cohorts_from": first}
    archived = params.flag(query, "include_archived")
    ws = context(request, principal).workspace_id
    summary, cohort_rows = await customers.customers(conn, ws, archived, values)
    report = build.customers(summary, cohort_rows, asked, months)
    return respond(request, report, "cohorts")


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
    request: Request,
    principal: Reader,
    from_: From = None,
    to: To = None,
    interval: Annotated[
        str | None, Query(max_length=20, description="day, week, month (default), quarter or year")
    ] = None,
    tz: Tz = None,
    group_by: Annotated[str | None, Query(max_length=20, description="source")] = None,
    include_archived: Archived = None,
) -> Response:
    conn = read_pool(request)
    query = dict(request.query_params)
    params.check_known(query, ("interval", "group_by", *_PERIOD))
    period = params.period(query, "month")
    by_source = params.choice(query, "group_by", ("source",), None) == "source"
    archived = params.flag(query, "include_archived")
    ws = context(request, principal).workspace_id
    rows = await acquisition.lead_conversion(conn, ws, by_source, archived, _bounds(period))
    return respond(request, build.lead_conversion(rows, period, by_source), "periods")


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
async def attribution_report(
    request: Request,
    principal: Reader,
    from_: From = None,
    to: To = None,
    tz: Tz = None,
    include_archived: Archived = None,
) -> Response:
    conn = read_pool(request)
    query = dict(request.query_params)
    params.check_known(query, _PERIOD)
    period = params.period(query, "month")
    archived = params.flag(query, "include_archived")
    ws = context(request, principal).workspace_id
    counts, won = await acquisition.attribution(conn, ws, archived, _bounds(period))
    return respond(request, build.attribution(counts, won, period), "sources")
