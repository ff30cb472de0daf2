"""The company resource: fields, natural key (domain), filters."""

from __future__ import annotations

import re
from typing import Any

from .. import models
from ..errors import field_error
from ..resources.spec import Include, NaturalKey, QueryParam, ResourceSpec, fields_of, register
from .schemas import Company, CompanyCreate, CompanyUpdate

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalise_domain(value: str) -> str:
    """``https://WWW.Example.com/path`` -> ``example.com``; refuses what is not a host name."""
    domain = value.strip().lower()
    domain = re.sub(r"^[a-z][a-z0-9+.-]*://", "", domain).split("/")[0].split("?")[0].rstrip(".")
    domain = domain.removeprefix("www.")
    try:
        domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        raise field_error("/domain", "not a valid domain name") from None
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 253 or not all(_LABEL.match(label) for label in labels):
        raise field_error("/domain", "not a valid domain name")
    return domain


def _normalise(payload: dict[str, Any]) -> dict[str, Any]:
    out = dict(payload)
    if out.get("domain"):
        out["domain"] = normalise_domain(out["domain"])
    return out


def _search_text(row: dict[str, Any]) -> str:
    return " ".join(p for p in (row.get("name"), row.get("domain")) if p).lower()


COMPANIES = register(
    ResourceSpec(
        name="companies",
        object="company",
        fields=fields_of(models.Company, unfilterable=("currency",)),
        money=("annual_revenue",),
        create_schema=CompanyCreate,
        update_schema=CompanyUpdate,
        read_schema=Company,
        normalise=_normalise,
        search_text=_search_text,
        natural_key=NaturalKey(
            "domain",
            "by-domain",
            normalise_domain,
            "normalised: scheme, www., path and trailing dot removed, lower-cased, IDNA",
        ),
        searched="name and domain",
        sorts=("created_at", "updated_at", "name"),
        member_columns=("owner_id",),
        query_params=(
            QueryParam("segment_id", "id", "segment", "uuid", "Members of this segment"),
            QueryParam("domain", "domain", "eq", "text"),
            QueryParam("industry", "industry", "eq", "text"),
            QueryParam("owner_id", "owner_id", "eq", "uuid"),
            QueryParam("tag", "tags", "contains", "text[]"),
            QueryParam("updated_after", "updated_at", "gt", "timestamptz"),
            QueryParam("created_after", "created_at", "gt", "timestamptz"),
            QueryParam("created_before", "created_at", "lt", "timestamptz"),
        ),
        defaults={"tags": [], "custom_fields": {}, "external_ids": {}},
        includes=(Include("contacts", "company_id", "contacts", "reverse"),),
        required=("name",),
    )
)
