"""``GET /v1/search``: what a user types in a search box, across contacts, companies, deals and tickets."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from ..auth import Principal, require
from ..deps import read_pool
from ..errors import Forbidden, field_error
from ..http import json_response, problems
from ..resources import repository as resources
from ..resources.spec import REGISTRY
from ..routing import Route
from ..textsearch import looks_like_phone, query_text
from . import repository as repo

SearchObject = TypeAliasType("SearchObject", Literal["contact", "company", "deal", "ticket"])
_TABLES = {"contact": "contacts", "company": "companies", "deal": "deals", "ticket": "tickets"}
_TYPE = "(contact|company|deal|ticket)"
_TYPES_PATTERN = f"^{_TYPE}(,{_TYPE})*$"


class SearchHit(BaseModel):
    object: SearchObject
    id: uuid.UUID
    title: str
    """The name people know it by: a contact's name (or email, or phone), a company's or deal's name, a
    ticket's subject."""
    subtitle: str | None
    score: float
    """0 to 1, higher is closer; hits come best first."""
    data: dict[str, Any] = Field(
        default_factory=dict, description="With `include=object`: the object as its own GET returns it"
    )


class SearchResults(BaseModel):
    object: Literal["list"]
    data: list[SearchHit]


router = APIRouter(prefix="/v1", tags=["search"], route_class=Route)


def _types(raw: str | None, principal: Principal) -> tuple[str, ...]:
    if raw is None:  # every type this key may read
        return tuple(t for t in repo.TYPES if principal.allows(f"{_TABLES[t]}:read"))
    wanted = {t.strip() for t in raw.split(",") if t.strip()}
    unknown = sorted(wanted - set(repo.TYPES))
    if unknown or not wanted:
        problem = f"unknown type {', '.join(unknown)}" if unknown else "no type named"
        raise field_error("/types", f"{problem}; types are {', '.join(repo.TYPES)}")
    for t in wanted:
        if not principal.allows(f"{_TABLES[t]}:read"):
            raise Forbidden(f"This API key lacks the '{_TABLES[t]}:read' scope")
    return tuple(t for t in repo.TYPES if t in wanted)


@router.get(
    "/search",
    operation_id="search_all",
    response_model=SearchResults,
    responses=problems(403, 422),
    summary="Search across objects",
    description="Ranked hits for what a user types: names without accents, with a typo or in either order, "
    "a name with its company (`ann acme`), an email or its domain, a company's domain with or without its "
    "TLD, a phone in any format (read in the `CRM_PHONE_REGION` region when it has no country code), a "
    "deal's name, a ticket's number (`#1042`) or subject words. Each type needs its `<resource>:read` "
    "scope; without `types`, every type the key may read. A write is found by the next request. "
    "`include=object` adds each object as its GET returns it, under `data`.",
)
async def search_all(
    request: Request,
    principal: Annotated[Principal, require("search:read")],
    q: Annotated[str, Query(min_length=1, max_length=200, description="what the user typed")],
    types: Annotated[
        str | None,
        Query(
            description="comma-separated: contact, company, deal, ticket (default: every readable one)",
            pattern=_TYPES_PATTERN,
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
    include: Annotated[Literal["object"] | None, Query(description="`object`: add each hit's object")] = None,
) -> Response:
    conn = read_pool(request)
    if "\x00" in q:
        raise field_error("/q", "must not contain NUL characters")
    wanted = _types(types, principal)
    text = query_text(q)
    # one letter would match too much, and text without a letter or digit has no trigram for the index
    if (len(text) < 2 and not text.isdigit()) or not any(c.isalnum() for c in text) or not wanted:
        return json_response({"object": "list", "data": []})
    found = await repo.hits(conn, principal.workspace_id, wanted, text, looks_like_phone(q), limit)
    for hit in found:
        hit["score"] = round(float(hit["score"]), 4)
    if include == "object":
        await _add_objects(conn, principal.workspace_id, found)
    return json_response({"object": "list", "data": found})


async def _add_objects(conn: Any, workspace_id: uuid.UUID, found: list[dict[str, Any]]) -> None:
    """One statement per type among the hits."""
    for kind, table in _TABLES.items():
        ids = [h["id"] for h in found if h["object"] == kind]
        if not ids:
            continue
        spec = REGISTRY[table]
        rows = {r["id"]: spec.to_api(r) for r in await resources.fetch_by_ids(conn, spec, workspace_id, ids)}
        for h in found:
            if h["object"] == kind:
                h["data"] = rows.get(h["id"])
    found[:] = [h for h in found if h["data"] is not None]  # archived or erased since the search read it
