"""The member and team resources: fields, natural key (a member's email), filters."""

from __future__ import annotations

from typing import Any

from .. import models
from ..contacts.spec import normalise_email
from ..resources.spec import Include, NaturalKey, QueryParam, Reference, ResourceSpec, fields_of, register
from .schemas import Member, MemberCreate, MemberUpdate, Team, TeamCreate, TeamUpdate


def _normalise_member(payload: dict[str, Any]) -> dict[str, Any]:
    out = dict(payload)
    if out.get("email"):
        out["email"] = normalise_email(out["email"])
    return out


def _normalise_team(payload: dict[str, Any]) -> dict[str, Any]:
    out = dict(payload)
    if out.get("member_ids"):
        # a member is in a team once; order kept as given (round robin walks it)
        out["member_ids"] = list(dict.fromkeys(out["member_ids"]))
    return out


def _member_text(row: dict[str, Any]) -> str:
    return " ".join(p for p in (row.get("name"), row.get("email")) if p).lower()


def _team_text(row: dict[str, Any]) -> str:
    return str(row.get("name") or "").lower()


_TIMES = (
    QueryParam("updated_after", "updated_at", "gt", "timestamptz"),
    QueryParam("created_after", "created_at", "gt", "timestamptz"),
    QueryParam("created_before", "created_at", "lt", "timestamptz"),
)

MEMBERS = register(
    ResourceSpec(
        name="members",
        object="member",
        fields=fields_of(models.Member),
        create_schema=MemberCreate,
        update_schema=MemberUpdate,
        read_schema=Member,
        normalise=_normalise_member,
        search_text=_member_text,
        natural_key=NaturalKey("email", "by-email", normalise_email, "lower-cased and trimmed"),
        searched="name and email",
        sorts=("created_at", "updated_at", "name", "email"),
        query_params=(
            QueryParam("email", "email", "eq", "text"),
            QueryParam("role", "role", "eq", "text"),
            QueryParam("active", "active", "eq", "boolean"),
            *_TIMES,
        ),
        defaults={"role": "member", "active": True, "external_ids": {}},
        required=("email", "name", "role", "active"),
    )
)

TEAMS = register(
    ResourceSpec(
        name="teams",
        object="team",
        fields=fields_of(models.Team),
        create_schema=TeamCreate,
        update_schema=TeamUpdate,
        read_schema=Team,
        normalise=_normalise_team,
        search_text=_team_text,
        searched="name",
        references=(Reference("member_ids", "members"),),
        sorts=("created_at", "updated_at", "name"),
        query_params=(QueryParam("member_id", "member_ids", "contains", "uuid[]"), *_TIMES),
        includes=(Include("members", "member_ids", "members", "array"),),
        defaults={"member_ids": [], "external_ids": {}},
        required=("name",),
    )
)
