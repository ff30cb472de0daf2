"""The ticket resource (and its comments) described as specs over the shared machinery.

Every write path (create, PATCH, upserts, batch) runs ``_prepare``: the status machine, the status
timestamps, the requester's company, and the SLA due times, with at most one query for the contacts and one
for the policies a call needs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, Boolean, Integer, Select, and_, any_, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from .. import models, sql
from ..errors import CRMError
from ..resources.spec import Include, Pair, QueryParam, Reference, ResourceSpec, fields_of, register
from . import rules, sla
from .schemas import Ticket, TicketComment, TicketCommentCreate, TicketCreate, TicketUpdate


def _policies_stmt() -> Select[Any]:
    """The policies a write names (``ids``) and, when ``want_default``, the workspace's live default."""
    p = sql.table("sla_policies")
    default = and_(p.c.is_default, p.c.archived_at.is_(None), sql.param("want_default", Boolean))
    return select(p.c.id, p.c.is_default, p.c.hours, p.c.time_zone, p.c.schedule, p.c.targets).where(
        p.c.workspace_id == sql.param("ws"), or_(p.c.id == any_(sql.param("ids", ARRAY(UUID))), default)
    )


def _companies_stmt() -> Select[Any]:
    c = sql.table("contacts")
    return select(c.c.id, c.c.company_id).where(
        c.c.workspace_id == sql.param("ws"), c.c.id == any_(sql.param("ids", ARRAY(UUID)))
    )


def _numbers_stmt() -> Select[Any]:
    return select(func.nextval("ticket_numbers", type_=BigInteger)).select_from(
        func.generate_series(1, sql.param("n", Integer))
    )


_POLICIES = sql.Query(_policies_stmt)
_COMPANIES = sql.Query(_companies_stmt)
_NUMBERS = sql.Query(_numbers_stmt)


async def _number(conn: asyncpg.Connection, pairs: Sequence[Pair], failures: dict[int, CRMError]) -> None:
    """New tickets draw their numbers, all in one statement."""
    new = [n for i, (old, n) in enumerate(pairs) if old is None and i not in failures]
    if new:
        for ticket, number in zip(new, await _NUMBERS.fetch(conn, n=len(new)), strict=True):
            ticket["number"] = number[0]


async def _policies(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, ids: set[uuid.UUID], want_default: bool
) -> tuple[dict[uuid.UUID, sla.Policy], sla.Policy | None]:
    if not ids and not want_default:
        return {}, None
    rows = await _POLICIES.fetch(conn, ws=workspace_id, ids=list(ids), want_default=want_default)
    by_id = {r["id"]: sla.Policy.from_row(r) for r in rows}
    default = next((by_id[r["id"]] for r in rows if r["is_default"]), None)
    return by_id, default


async def _prepare(conn: asyncpg.Connection, ctx: Any, pairs: Sequence[Pair]) -> dict[int, CRMError]:
    now = dt.datetime.now(dt.UTC)
    failures: dict[int, CRMError] = {}
    clocked: list[int] = []
    for i, (old, new) in enumerate(pairs):
        error = rules.check_transition(old["status"] if old else None, new["status"])
        if error is not None:
            failures[i] = error
            continue
        rules.stamp_status(old, new, now)
        if rules.needs_policy(old, new):
            clocked.append(i)
    await _company_from_requester(
        conn, ctx.workspace_id, [p for i, p in enumerate(pairs) if i not in failures]
    )
    ids = {pairs[i][1]["sla_policy_id"] for i in clocked} - {None}
    # a new ticket without a policy gets the workspace's default
    want_default = any(pairs[i][0] is None and pairs[i][1]["sla_policy_id"] is None for i in clocked)
    by_id, default = await _policies(conn, ctx.workspace_id, ids, want_default)
    for i in clocked:
        old, new = pairs[i]
        if old is None and new["sla_policy_id"] is None and default is not None:
            new["sla_policy_id"] = default.id
        rules.apply_clock(old, new, by_id.get(new["sla_policy_id"]) or _default_if(new, default), now)
    await _number(conn, pairs, failures)
    return failures


async def _company_from_requester(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, pairs: Sequence[Pair]
) -> None:
    """A ticket without a company takes its new requester's company."""
    wanted = [
        new
        for old, new in pairs
        if new["company_id"] is None
        and new["requester_id"] is not None
        and (old is None or old["requester_id"] != new["requester_id"])
    ]
    if not wanted:
        return
    rows = await _COMPANIES.fetch(conn, ws=workspace_id, ids=list({new["requester_id"] for new in wanted}))
    company_of = {r["id"]: r["company_id"] for r in rows}
    for new in wanted:
        new["company_id"] = company_of.get(new["requester_id"])


def _default_if(new: dict[str, Any], default: sla.Policy | None) -> sla.Policy | None:
    return default if default is not None and new["sla_policy_id"] == default.id else None


def _derived(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    return ["status_changed"] if old is not None and old["status"] != new["status"] else []


TICKETS = register(
    ResourceSpec(
        name="tickets",
        object="ticket",
        searched="number and subject",
        fields=fields_of(
            models.Ticket,
            unfilterable=("description", "closed_at", "sla_paused_at", "sla_paused_seconds", "number"),
        ),
        create_schema=TicketCreate,
        update_schema=TicketUpdate,
        read_schema=Ticket,
        normalise=dict,
        search_text=lambda row: f"{row.get('number') or ''} {row.get('subject') or ''}".strip(),
        prepare=_prepare,
        derived_events=_derived,
        references=(
            Reference("requester_id", "contacts"),
            Reference("company_id", "companies"),
            Reference("sla_policy_id", "sla_policies"),
        ),
        sorts=("created_at", "updated_at"),
        member_columns=("assignee_id",),
        query_params=(
            QueryParam("status", "status", "eq", "text"),
            QueryParam("priority", "priority", "eq", "text"),
            QueryParam("channel", "channel", "eq", "text"),
            QueryParam("requester_id", "requester_id", "eq", "uuid"),
            QueryParam("company_id", "company_id", "eq", "uuid"),
            QueryParam("assignee_id", "assignee_id", "eq", "uuid"),
            QueryParam("sla_policy_id", "sla_policy_id", "eq", "uuid"),
            QueryParam("tag", "tags", "contains", "text[]"),
            QueryParam("first_response_due_before", "first_response_due_at", "lt", "timestamptz"),
            QueryParam("resolution_due_before", "resolution_due_at", "lt", "timestamptz"),
            QueryParam("resolution_due_after", "resolution_due_at", "gte", "timestamptz"),
            QueryParam("updated_after", "updated_at", "gt", "timestamptz"),
            QueryParam("created_after", "created_at", "gt", "timestamptz"),
            QueryParam("created_before", "created_at", "lt", "timestamptz"),
        ),
        relations={"requester": ("requester_id", "contacts"), "company": ("company_id", "companies")},
        includes=(
            Include("requester", "requester_id", "contacts"),
            Include("company", "company_id", "companies"),
            Include("sla_policy", "sla_policy_id", "sla_policies"),
        ),
        defaults={
            "status": "new",
            "priority": "normal",
            "channel": "api",
            "tags": [],
            "custom_fields": {},
            "external_ids": {},
            "sla_paused_seconds": 0,
        },
        required=("subject", "status", "priority", "channel"),
    )
)

# Comments are written by the ticket service (a comment can answer the ticket) and listed with the shared
# keyset pages; they have no routes of their own, so the spec is not registered.
COMMENTS = ResourceSpec(
    name="ticket_comments",
    object="ticket_comment",
    fields=fields_of(models.TicketComment, unfilterable=("body",)),
    create_schema=TicketCommentCreate,
    update_schema=TicketCommentCreate,
    read_schema=TicketComment,
    normalise=dict,
    search_text=lambda row: "",
    sorts=("created_at",),
    query_params=(
        QueryParam("public", "public", "eq", "boolean"),
        QueryParam("author_type", "author_type", "eq", "text"),
    ),
    defaults={"public": True, "author_type": "agent"},
)
