"""The contact resource: fields, natural key (email), filters, and one relation hop (company)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from .. import models
from ..errors import Conflict, CRMError
from ..resources.spec import (
    Include,
    NaturalKey,
    Pair,
    QueryParam,
    Reference,
    ResourceSpec,
    fields_of,
    register,
)
from ..textsearch import phone_digits
from .schemas import Contact, ContactCreate, ContactUpdate


def normalise_email(value: str) -> str:
    return value.strip().lower()


def _normalise(payload: dict[str, Any]) -> dict[str, Any]:
    out = dict(payload)
    if out.get("email"):
        out["email"] = normalise_email(out["email"])
    return out


def _finalise(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """Stamp the moment consent was given or withdrawn, unless the client stated it."""
    before = old["marketing_consent"] if old else False
    stated = new["marketing_consent_at"] != (old["marketing_consent_at"] if old else None)
    if new["marketing_consent"] != before and not stated:
        new["marketing_consent_at"] = dt.datetime.now(dt.UTC)


async def _prepare(conn: Any, ctx: Any, pairs: Sequence[Pair]) -> dict[int, CRMError]:
    """An erased contact stays erased: no path (update, archive, restore, upsert, batch) may refill it."""
    return {
        i: Conflict(f"The contact {old['id']} was erased; it takes no further writes")
        for i, (old, _) in enumerate(pairs)
        if old is not None and old.get("erased_at") is not None
    }


def _search_text(row: dict[str, Any]) -> str:
    """Names, email and the phone's E.164 digits (so any way of typing the number finds it)."""
    parts = (row.get("first_name"), row.get("last_name"), row.get("email"), phone_digits(row.get("phone")))
    return " ".join(p for p in parts if p).lower()


CONTACTS = register(
    ResourceSpec(
        name="contacts",
        object="contact",
        fields=fields_of(models.Contact, unfilterable=("marketing_consent_source",)),
        create_schema=ContactCreate,
        update_schema=ContactUpdate,
        read_schema=Contact,
        normalise=_normalise,
        search_text=_search_text,
        finalise=_finalise,
        prepare=_prepare,
        natural_key=NaturalKey("email", "by-email", normalise_email, "lower-cased and trimmed"),
        searched="first and last name, email and phone",
        references=(Reference("company_id", "companies"),),
        sorts=("created_at", "updated_at", "score"),
        member_columns=("owner_id",),
        query_params=(
            QueryParam("segment_id", "id", "segment", "uuid", "Members of this segment"),
            QueryParam("email", "email", "eq", "text"),
            QueryParam("company_id", "company_id", "eq", "uuid"),
            QueryParam("owner_id", "owner_id", "eq", "uuid"),
            QueryParam("lifecycle_stage", "lifecycle_stage", "eq", "text"),
            QueryParam("source", "source", "eq", "text"),
            QueryParam("source_detail", "source_detail", "eq", "text"),
            QueryParam("tag", "tags", "contains", "text[]"),
            QueryParam("updated_after", "updated_at", "gt", "timestamptz"),
            QueryParam("created_after", "created_at", "gt", "timestamptz"),
            QueryParam("created_before", "created_at", "lt", "timestamptz"),
            QueryParam("min_score", "score", "gte", "bigint", "Contacts scoring at least this"),
        ),
        relations={"company": ("company_id", "companies")},
        includes=(Include("company", "company_id", "companies"),),
        defaults={
            "tags": [],
            "custom_fields": {},
            "external_ids": {},
            "marketing_consent": False,
            "lifetime_value": {},
            "order_count": 0,
            "score": 0,
        },
    )
)
