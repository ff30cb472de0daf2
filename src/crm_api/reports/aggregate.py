"""``POST /v1/<resource>/aggregate``: counts and sums of any resource, filtered with the search grammar and
grouped by fields or by time buckets.

The filter is ``/search``'s (``resources/filters.py``: the same fields, operators and relation hops);
groups and metrics name the resource's own fields. The statement is made of pieces (``resources/exprs.py``)
and looked up in a ``sql.Shapes`` cache by its shape, as lists and searches are: Core is built and compiled
once per shape. It asks for one group more than the cap, so "too many groups" costs no second query.

(No ``from __future__ import annotations`` here: FastAPI reads the route's annotations at definition.)
"""

import datetime as dt
import decimal
from collections.abc import Hashable
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import Date, DateTime, Float, Select, cast, func, select
from typing_extensions import TypeAliasType

from .. import jsonutil, sql
from ..auth import Context, Principal, require
from ..deps import read_pool
from ..errors import field_error
from ..http import context, json_response, problems
from ..resources.custom_fields import enforce as custom_fields
from ..resources.exprs import Expr, Params
from ..resources.filters import Compiler
from ..resources.query import in_workspace, live
from ..resources.schemas import Filter, WriteModel
from ..resources.spec import ResourceSpec
from ..routing import Route
from .aggregate_schema import NUMERIC, TIMES, groupable, request_model
from .params import zone as zone_of

MAX_GROUPS = 10_000
MetricOp = TypeAliasType("MetricOp", Literal["count", "sum", "avg", "min", "max", "median", "p90"])
Bucket = TypeAliasType("Bucket", Literal["day", "week", "month", "quarter", "year"])
_SHAPES = sql.Shapes(512)


class TimeGroup(WriteModel):
    field: str = Field(max_length=100, description="A timestamp or date field, such as created_at")
    interval: Bucket
    tz: str | None = Field(None, max_length=100, description="IANA time zone of the buckets; default UTC")


class Metric(WriteModel):
    op: MetricOp
    field: str | None = Field(
        None, max_length=100, description="A number field; for count, optional (counts where it is set)"
    )


class AggregateRequest(WriteModel):
    filter: Filter | None = None
    group_by: list[str | TimeGroup] = Field([], max_length=5, description="Fields, or time buckets of one")
    metrics: list[Metric] = Field(min_length=1, max_length=20)
    include_archived: bool = Field(False, description="Count archived records too; default false")


def _groupable(spec: ResourceSpec, name: str, path: str) -> str:
    """The field's type; unknown, list and JSON fields cannot group."""
    kind = spec.field_type(name)
    if kind is None or not groupable(kind):
        raise field_error(path, f"{spec.name} cannot be grouped by '{name}'")
    return kind


def _column(spec: ResourceSpec, name: str) -> Expr:
    return Expr(("col", name), lambda: sql.table(spec.table).c[name])


def _bucket(spec: ResourceSpec, name: str, kind: str, interval: str, tz: Expr) -> Expr:
    """The first day of the time bucket holding the field's value; a timestamp is read in ``tz``."""

    def build() -> Any:
        column = sql.table(spec.table).c[name]
        local = func.timezone(tz.build(), column) if kind == "timestamptz" else cast(column, DateTime)
        return cast(func.date_trunc(sql.const(interval), local), Date)

    return Expr(("bucket", name, interval, tz.key), build)


def _count(spec: ResourceSpec, name: str | None) -> Expr:
    if name is None:
        return Expr(("count",), lambda: func.count())
    return Expr(("count", name), lambda: func.count(sql.table(spec.table).c[name]))


def _of(spec: ResourceSpec, op: str, name: str) -> Expr:
    return Expr((op, name), lambda: _metric(op, sql.table(spec.table).c[name]))


def _pieces(spec: ResourceSpec, body: AggregateRequest, params: Params) -> tuple[list[Expr], list[Expr]]:
    """The group expressions and the metric expressions, each a piece (a shape key and its builder)."""
    groups: list[Expr] = []
    for i, item in enumerate(body.group_by):
        if isinstance(item, str):
            _groupable(spec, item, f"/group_by/{i}")
            groups.append(_column(spec, item))
            continue
        kind = _groupable(spec, item.field, f"/group_by/{i}/field")
        if kind not in TIMES:
            raise field_error(f"/group_by/{i}/field", f"'{item.field}' is not a timestamp or a date")
        zone = zone_of({} if item.tz is None else {"tz": item.tz}, "tz", f"/group_by/{i}/tz")
        groups.append(_bucket(spec, item.field, kind, item.interval, params.add(zone.key, "text")))
    metrics: list[Expr] = []
    for i, metric in enumerate(body.metrics):
        name = metric.field
        if name is not None and spec.field_type(name) is None:
            raise field_error(f"/metrics/{i}/field", f"unknown field '{name}' for {spec.name}")
        if metric.op == "count":
            metrics.append(_count(spec, name))
        elif name is None:
            raise field_error(f"/metrics/{i}/field", f"{metric.op} needs a number field")
        elif spec.field_type(name) not in NUMERIC:
            raise field_error(f"/metrics/{i}/field", f"{metric.op} needs a number field; '{name}' is not one")
        elif name in spec.money and "currency" not in body.group_by:
            raise field_error(
                f"/metrics/{i}/field",
                f"'{name}' is money in each {spec.object}'s currency: add \"currency\" to group_by "
                "(amounts in different currencies are never added together)",
            )
        else:
            metrics.append(_of(spec, metric.op, name))
    return groups, metrics


def _metric(op: str, column: Any) -> Any:
    if op in ("median", "p90"):
        # percentile_cont takes floats: rounded to 4 places in the answer
        return func.percentile_cont(0.5 if op == "median" else 0.9).within_group(cast(column, Float))
    return getattr(func, op)(column)


def _statement(where: list[Expr], groups: list[Expr], metrics: list[Expr]) -> Select[Any]:
    columns = [g.build() for g in groups]
    stmt = select(
        *(c.label(f"g{i}") for i, c in enumerate(columns)),
        *(m.build().label(f"m{i}") for i, m in enumerate(metrics)),
    ).where(*(w.build() for w in where))
    if columns:
        stmt = stmt.group_by(*columns).order_by(*columns).limit(MAX_GROUPS + 1)
    return stmt


def _value(op: str, value: Any) -> Any:
    if value is None or op in ("count", "min", "max", "sum"):
        return value
    number = decimal.Decimal(repr(value)) if isinstance(value, float) else decimal.Decimal(value)
    return float(number.quantize(decimal.Decimal("0.0001"), decimal.ROUND_HALF_UP))


async def aggregate(
    conn: asyncpg.Pool | asyncpg.Connection, spec: ResourceSpec, ctx: Context, body: AggregateRequest
) -> dict[str, Any]:
    params = Params(ws=ctx.workspace_id)
    where = [in_workspace(spec)]
    if body.filter is not None:
        compiler = Compiler(spec, params)
        # the definitions are one query, asked only when the filter may name a custom field
        if custom_fields.applies(spec) and "custom_fields." in jsonutil.dumps_str(body.filter):
            compiler.custom_definitions = await custom_fields.definitions(conn, ctx.workspace_id, spec.object)
        where.append(compiler.compile(body.filter))
    if not body.include_archived:
        where.append(live(spec))
    groups, metrics = _pieces(spec, body, params)
    key: Hashable = (
        "aggregate",
        spec.table,
        *(tuple(p.key for p in part) for part in (where, groups, metrics)),
    )
    rows = await _SHAPES.get(key, lambda: _statement(where, groups, metrics)).fetch(conn, **params.values)
    names = [g if isinstance(g, str) else g.field for g in body.group_by]
    if len(rows) > MAX_GROUPS:
        by = ", ".join(names)
        raise field_error(
            "/group_by", f"more than {MAX_GROUPS} groups by {by}; group by fewer or coarser fields"
        )
    labels = [m.op if m.field is None else f"{m.op}_{m.field}" for m in body.metrics]
    out = []
    for row in rows:
        group = {n: _group_value(row[f"g{i}"]) for i, n in enumerate(names)}
        values = {
            label: _value(m.op, row[f"m{i}"])
            for i, (label, m) in enumerate(zip(labels, body.metrics, strict=True))
        }
        out.append({"group": group, "values": values})
    return {"object": "aggregate", "rows": out}


def _group_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else value


class AggregateRow(BaseModel):
    group: dict[str, Any] = Field(
        description="The group's value of each group_by field (a bucket's first day)"
    )
    values: dict[str, Any] = Field(
        description="Each metric by name: count, or <op>_<field> (sum_amount); avg, median and p90 rounded "
        "to 4 places, sums of money as decimal strings"
    )


class AggregateResponse(BaseModel):
    object: Literal["aggregate"]
    rows: list[AggregateRow] = Field(description="One per group, in group order; one row without group_by")


def aggregate_router(spec: ResourceSpec) -> APIRouter:
    router = APIRouter(prefix=f"/v1/{spec.url_segment}", tags=[spec.name], route_class=Route)
    Reader = Annotated[Principal, require(f"{spec.name}:read")]
    Body = request_model(spec, AggregateRequest, str | TimeGroup, Metric)

    @router.post(
        "/aggregate",
        operation_id=f"{spec.name}_aggregate",
        response_model=AggregateResponse,
        responses=problems(422),
        summary=f"Count and sum {spec.many} by groups",
        description=(
            f"Filters {spec.many} with the /search grammar (`filter`), groups them by fields or by time "
            'buckets of a timestamp or date field (`{"field": "created_at", "interval": "month", "tz": '
            '"Europe/Paris"}`), and computes `metrics`: `count`, or `sum`, `avg`, `min`, `max`, `median`, '
            "`p90` of a number field; a metric of money (a deal's `amount`, a company's `annual_revenue`) "
            "needs `currency` in `group_by`, since amounts in different currencies are never added "
            "together. At most 10,000 groups (422 beyond). Archived records are left out unless "
            "`include_archived`."
        ),
    )
    async def aggregate_route(request: Request, body: Body, principal: Reader) -> Response:  # type: ignore[valid-type]
        conn = read_pool(request)
        return json_response(await aggregate(conn, spec, context(request, principal), body))

    return router
