"""Rows to answers: money per currency as decimal strings, rates rounded to 4 places, days to 2, buckets
filled in (a period with nothing in it is a row of zeros, so a chart's axis has no holes).

Rounding is half up, once, at the end: sums are exact decimals until formatted.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from .params import Period

_CENT = decimal.Decimal("0.01")
_RATE = decimal.Decimal("0.0001")
_DAY_US = decimal.Decimal(86_400_000_000)
_MINUTE_US = decimal.Decimal(60_000_000)

Money = dict[str, decimal.Decimal]

_AS_OF_NOTE = (
    "Each deal is in the stage it was in at as_of; amounts, currencies and probabilities are today's."
)


def money(amounts: Money) -> dict[str, str]:
    """Per currency, codes in order, two decimals."""
    return {c: str(amounts[c].quantize(_CENT, decimal.ROUND_HALF_UP)) for c in sorted(amounts)}


def rate(part: int, whole: int) -> float | None:
    if whole == 0:
        return None
    return float((decimal.Decimal(part) / decimal.Decimal(whole)).quantize(_RATE, decimal.ROUND_HALF_UP))


def days(span: dt.timedelta | None) -> float | None:
    if span is None:
        return None
    micro = decimal.Decimal(span // dt.timedelta(microseconds=1))
    return float((micro / _DAY_US).quantize(_CENT, decimal.ROUND_HALF_UP))


def _add(into: Money, currency: str | None, amount: decimal.Decimal | None) -> None:
    if currency is not None and amount is not None:
        into[currency] = into.get(currency, decimal.Decimal(0)) + amount


def pipeline(
    found: dict[str, Any],
    stages: list[dict[str, Any]],
    counts: list[dict[str, Any]],
    as_of: dt.datetime | None,
    owner_id: uuid.UUID | None,
) -> dict[str, Any]:
    by_stage: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for row in counts:
        by_stage[row["stage_id"]].append(row)
    rows, total_count, total, total_weighted = [], 0, Money(), Money()
    for stage in stages:
        count, amount, weighted = 0, Money(), Money()
        for row in by_stage.get(stage["id"], ()):
            count += row["deals"]
            _add(amount, row["currency"], row["amount"])
            _add(weighted, row["currency"], row["amount"] and row["amount"] * stage["probability"])
        total_count += count
        for currency in amount:
            _add(total, currency, amount[currency])
            _add(total_weighted, currency, weighted[currency])
        rows.append(
            {
                "stage_id": stage["id"],
                "name": stage["name"],
                "kind": stage["kind"],
                "probability": float(stage["probability"]),
                "deal_count": count,
                "amount": money(amount),
                "weighted_amount": money(weighted),
            }
        )
    return {
        "object": "pipeline_report",
        "pipeline_id": found["id"],
        "pipeline_name": found["name"],
        "owner_id": owner_id,
        "as_of": as_of,
        "note": None if as_of is None else _AS_OF_NOTE,
        "stages": rows,
        "totals": {
            "deal_count": total_count,
            "amount": money(total),
            "weighted_amount": money(total_weighted),
        },
    }


def _period_fields(period: Period) -> dict[str, Any]:
    return {"from": period.start, "to": period.end, "interval": period.interval, "tz": period.tz_name}


def _groups(values: Iterable[Any]) -> list[Any]:
    """Groups in a stable order, the null group (no owner, no source) last."""
    present = set(values)
    return sorted((v for v in present if v is not None), key=str) + ([None] if None in present else [])


def forecast(rows: list[dict[str, Any]], period: Period, by_owner: bool) -> dict[str, Any]:
    cells: dict[tuple[dt.date, Any], dict[str, Any]] = {}
    unscheduled: dict[str, Any] = {"deal_count": 0, "best_case": Money(), "weighted": Money()}
    owners = _groups(r["owner_id"] for r in rows) if by_owner else [None]
    buckets = period.buckets()
    for bucket in buckets:
        for owner in owners or [None]:
            cells[bucket, owner] = {
                "won_count": 0,
                "won": Money(),
                "weighted": Money(),
                "best_case": Money(),
                "deal_count": 0,
            }
    for row in rows:
        target = unscheduled if row["kind"] == "unscheduled" else cells[row["bucket"], row["owner_id"]]
        if row["kind"] == "won":
            target["won_count"] += row["deals"]
            _add(target["won"], row["currency"], row["amount"])
        else:
            target["deal_count"] += row["deals"]
            _add(target["best_case"], row["currency"], row["amount"])
            _add(target["weighted"], row["currency"], row["weighted"])
    periods = []
    for (bucket, owner), cell in cells.items():
        entry: dict[str, Any] = {"period_start": bucket}
        if by_owner:
            entry["owner_id"] = owner
        entry.update({k: money(v) if isinstance(v, dict) else v for k, v in cell.items()})
        periods.append(entry)
    return {
        "object": "forecast_report",
        **_period_fields(period),
        "group_by": "owner" if by_owner else None,
        "periods": periods,
        "unscheduled": {k: money(v) if isinstance(v, dict) else v for k, v in unscheduled.items()},
    }


def win_rate(rows: list[dict[str, Any]], period: Period, group_by: str | None) -> dict[str, Any]:
    groups: dict[Any, dict[str, Any]] = {}
    for key in _groups(r["grp"] for r in rows) if group_by else [None]:
        groups[key] = {"won": 0, "lost": 0, "won_amount": Money(), "lost_reasons": defaultdict(int)}
    for row in rows:
        group = groups[row["grp"]]
        if row["status"] == "won":
            group["won"] += row["deals"]
            _add(group["won_amount"], row["currency"], row["amount"])
        else:
            group["lost"] += row["deals"]
            group["lost_reasons"][row["lost_reason"] or "unspecified"] += row["deals"]
    out = []
    for key, group in groups.items():
        entry: dict[str, Any] = {"group": key} if group_by else {}
        entry.update(
            won=group["won"],
            lost=group["lost"],
            win_rate=rate(group["won"], group["won"] + group["lost"]),
            won_amount=money(group["won_amount"]),
            lost_reasons=dict(sorted(group["lost_reasons"].items())),
        )
        out.append(entry)
    return {
        "object": "win_rate_report",
        "from": period.start,
        "to": period.end,
        "tz": period.tz_name,
        "group_by": group_by,
        "groups": out,
    }


def sales_cycle(
    found: dict[str, Any],
    stages: list[dict[str, Any]],
    won: dict[str, Any],
    per_stage: list[dict[str, Any]],
    period: Period,
) -> dict[str, Any]:
    by_stage = {r["stage_id"]: r for r in per_stage}
    rows = []
    for stage in stages:
        row = by_stage.get(stage["id"])
        entered = row["entered"] if row else 0
        open_stage = stage["kind"] == "open"
        advanced = (row["advanced"] if row else 0) if open_stage else None
        rows.append(
            {
                "stage_id": stage["id"],
                "name": stage["name"],
                "kind": stage["kind"],
                "entered": entered,
                "advanced": advanced,
                "conversion": rate(advanced, entered) if advanced is not None else None,
                # a closed stage is where a deal ends: time spent there is no part of the cycle
                "median_days_in_stage": days(row["median"]) if row and open_stage else None,
                "mean_days_in_stage": days(row["mean"]) if row and open_stage else None,
            }
        )
    return {
        "object": "sales_cycle_report",
        "pipeline_id": found["id"],
        "pipeline_name": found["name"],
        "from": period.start,
        "to": period.end,
        "tz": period.tz_name,
        "days_to_won": {
            "deal_count": won["deals"],
            "mean": days(won["mean"]),
            "median": days(won["median"]),
            "p90": days(won["p90"]),
        },
        "stages": rows,
    }


def minutes(span: dt.timedelta | None) -> float | None:
    if span is None:
        return None
    micro = decimal.Decimal(span // dt.timedelta(microseconds=1))
    return float((micro / _MINUTE_US).quantize(_CENT, decimal.ROUND_HALF_UP))


def service(rows: list[dict[str, Any]], period: Period, group_by: str | None) -> dict[str, Any]:
    empty = {
        "grp": None,
        "created": 0,
        "resolved": 0,
        **dict.fromkeys(
            ("first_response_median", "first_response_p90", "resolution_median", "resolution_p90")
        ),
        **dict.fromkeys(
            ("first_response_met", "first_response_known", "resolution_met", "resolution_known"), 0
        ),
        "breaches": 0,
    }
    found = {r["grp"]: r for r in rows}
    out = []
    # without group_by the aggregate has one row even over no tickets; grouped, a group exists by its tickets
    for key in _groups(found) if group_by else [None]:
        row = found.get(key, empty)
        entry: dict[str, Any] = {"group": key} if group_by else {}
        entry.update(
            created=row["created"],
            resolved=row["resolved"],
            first_response_minutes={
                "median": minutes(row["first_response_median"]),
                "p90": minutes(row["first_response_p90"]),
            },
            resolution_minutes={
                "median": minutes(row["resolution_median"]),
                "p90": minutes(row["resolution_p90"]),
            },
            first_response_sla_met=rate(row["first_response_met"], row["first_response_known"]),
            resolution_sla_met=rate(row["resolution_met"], row["resolution_known"]),
            breaches=row["breaches"],
        )
        out.append(entry)
    return {
        "object": "service_report",
        "from": period.start,
        "to": period.end,
        "tz": period.tz_name,
        "group_by": group_by,
        "groups": out,
    }


def _cents(value: decimal.Decimal | float | None) -> str | None:
    """One amount; a float (a percentile) read from its shortest repr, which is what the database sent."""
    if value is None:
        return None
    exact = value if isinstance(value, decimal.Decimal) else decimal.Decimal(repr(value))
    return str(exact.quantize(_CENT, decimal.ROUND_HALF_UP))


def customers(
    summary: dict[str, Any],
    cohort_rows: list[dict[str, Any]],
    asked: dict[str, Any],
    months: list[dt.date],
) -> dict[str, Any]:
    """``months``: the cohorts' months, oldest first, the last being ``as_of``'s."""
    active = {(r["cohort"], r["month"]): r["active"] for r in cohort_rows}
    cohorts = []
    for i, month in enumerate(months):
        later = months[i : i + 12]
        cohorts.append(
            {
                "month": month,
                "size": active.get((month, month), 0),
                "active": [active.get((month, m), 0) for m in later],
            }
        )
    count = summary["customers"]
    return {
        "object": "customers_report",
        "as_of": asked["as_of"],
        "currency": asked["currency"],
        "churn_days": asked["churn_days"],
        "tz": asked["tz"],
        "customers": count,
        "lifetime_value": {
            "customers": summary["valued"],
            "mean": _cents(summary["mean"]),
            "median": _cents(summary["median"]),
            "p90": _cents(summary["p90"]),
        },
        "repeat_rate": rate(summary["repeat"], count),
        "churned": summary["churned"],
        "churn_rate": rate(summary["churned"], count),
        "cohorts": cohorts,
    }


def lead_conversion(rows: list[dict[str, Any]], period: Period, by_source: bool) -> dict[str, Any]:
    sources = _groups(r["grp"] for r in rows) if by_source else [None]
    found = {(r["bucket"], r["grp"]): r for r in rows}
    periods = []
    for bucket in period.buckets():
        for source in sources:
            row = found.get((bucket, source))
            leads, converted = (row["leads"], row["converted"]) if row else (0, 0)
            entry: dict[str, Any] = {"period_start": bucket}
            if by_source:
                entry["source"] = source
            entry.update(
                leads=leads,
                converted=converted,
                conversion_rate=rate(converted, leads),
                median_days_to_customer=days(row["median"]) if row else None,
            )
            periods.append(entry)
    return {
        "object": "lead_conversion_report",
        **_period_fields(period),
        "group_by": "source" if by_source else None,
        "periods": periods,
    }


def attribution(counts: list[dict[str, Any]], won: list[dict[str, Any]], period: Period) -> dict[str, Any]:
    amounts: dict[Any, Money] = defaultdict(Money)
    for row in won:
        _add(amounts[row["grp"]], row["currency"], row["amount"])
    found = {r["grp"]: r for r in counts}
    sources = []
    for source in _groups(found):
        row = found[source]
        sources.append(
            {
                "source": source,
                "contacts": row["contacts"],
                "leads": row["leads"],
                "customers": row["customers"],
                "won_amount": money(amounts.get(source, Money())),
            }
        )
    return {
        "object": "attribution_report",
        "from": period.start,
        "to": period.end,
        "tz": period.tz_name,
        "sources": sources,
    }
