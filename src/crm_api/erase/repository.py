"""The erase as one statement of data-modifying CTEs: the contact, its external ids, its activities, its
ticket comments, the stored event payloads about each of them, the webhook attempts that answered those
events, and the ``contact.erased`` event with its deliveries. Each part is set-based and index-backed.
"""

from __future__ import annotations

import json
import typing
import uuid
from typing import Any

import asyncpg
from sqlalchemy import (
    CTE,
    ColumnElement,
    DateTime,
    Exists,
    Select,
    Text,
    Update,
    cast,
    delete,
    false,
    func,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, array
from sqlalchemy.sql.selectable import Alias

from .. import jsonutil, sql
from ..events.store import events_cte, fanout

# What an erase leaves in each personal field: the row gets it, and so does every stored event payload
# that holds the field (``object`` and ``previous``), so payloads keep the published schema's types.
CONTACT_BLANKS: dict[str, Any] = {
    "email": None,
    "first_name": None,
    "last_name": None,
    "phone": None,
    "title": None,
    "tags": [],
    "custom_fields": {},
    "external_ids": {},
    "marketing_consent_source": None,
}
ACTIVITY_BLANKS: dict[str, Any] = {"subject": None, "body": None}
COMMENT_BLANKS: dict[str, Any] = {"body": ""}


def _target(table: str, name: str) -> Alias:
    """``UPDATE table AS name``: ``Table.alias`` is typed as a named FROM clause, which ``update`` refuses."""
    return typing.cast(Alias, sql.table(table).alias(name))


def _blanked(t: Alias, blanks: dict[str, Any]) -> dict[str, ColumnElement[Any]]:
    """SET values for a row's personal fields: ``blanks`` as constants in the statement."""
    values: dict[str, ColumnElement[Any]] = {}
    for name, blank in blanks.items():
        if blank is None:
            values[name] = null()
        elif blank == "":
            values[name] = sql.const("")
        elif blank in ([], {}):  # an empty text[] or jsonb: '{}' is the literal of both
            values[name] = sql.const("{}", t.c[name].type)
        else:
            raise ValueError(f"no blank value for {name}: {blank!r}")
    return values


def _json_const(value: Any) -> ColumnElement[Any]:
    return cast(sql.const(json.dumps(value)), JSONB)


def _scrubbed(e: Alias, s: Any, part: str) -> ColumnElement[Any]:
    """``data->part`` with each field of ``s.blanks`` that it holds set to its blank value (absent fields
    stay absent, so ``previous`` keeps meaning "the fields that changed")."""
    held = e.c.data.op("->")(sql.const(part))
    blank = func.jsonb_each(s.c.blanks).table_valued("key", "value").alias("b")
    replaced = (
        select(func.jsonb_object_agg(blank.c.key, blank.c.value))
        .where(held.op("?")(blank.c.key))
        .scalar_subquery()
    )
    empty = _json_const({})
    return func.coalesce(held, empty).op("||", return_type=JSONB)(func.coalesce(replaced, empty))


def _some(cte: CTE) -> Exists:
    """``EXISTS (SELECT 1 FROM cte)``: the parts run only when the contact was erased."""
    return select(sql.const(1)).select_from(cte).exists()


def _erase() -> Select[Any]:
    ws = sql.param("ws")
    contact_id = sql.param("contact_id", UUID)
    at = sql.param("at", DateTime(timezone=True))
    only = array([contact_id])

    c = _target("contacts", "c")
    target = (
        update(c)
        .values(
            **_blanked(c, CONTACT_BLANKS),
            marketing_consent=false(),
            marketing_consent_at=null(),
            search_text=sql.const(""),
            archived_at=func.coalesce(c.c.archived_at, at),
            erased_at=at,
            updated_at=at,
            version=c.c.version + 1,
        )
        .where(c.c.workspace_id == ws, c.c.id == contact_id, c.c.erased_at.is_(None))
        .returning(c.c.id)
        .cte("target")
    )
    x = _target("external_ids", "x")
    xids = (
        delete(x)
        .where(
            x.c.workspace_id == ws,
            x.c.object_id == contact_id,
            x.c.object_type == sql.const("contact"),
            _some(target),
        )
        .returning(sql.const(1))
        .cte("xids")
    )

    a = _target("activities", "a")
    mine = a.c.contact_ids.contains(only)
    alone = a.c.contact_ids.contained_by(only)
    # linked to this contact alone: its text is about this person, so it goes
    solo = (
        update(a)
        .values(
            **_blanked(a, ACTIVITY_BLANKS), search_text=sql.const(""), updated_at=at, version=a.c.version + 1
        )
        .where(a.c.workspace_id == ws, mine, alone, _some(target))
        .returning(a.c.id)
        .cte("solo")
    )
    # shared with other contacts: it is their record too, so only the link goes
    shared = (
        update(a)
        .values(
            contact_ids=func.array_remove(a.c.contact_ids, contact_id, type_=ARRAY(UUID)),
            updated_at=at,
            version=a.c.version + 1,
        )
        .where(a.c.workspace_id == ws, mine, ~alone, _some(target))
        .returning(a.c.id)
        .cte("shared")
    )
    tc = _target("ticket_comments", "tc")
    comments = (
        update(tc)
        .values(
            **_blanked(tc, COMMENT_BLANKS), search_text=sql.const(""), updated_at=at, version=tc.c.version + 1
        )
        .where(
            tc.c.workspace_id == ws,
            tc.c.author_type == sql.const("requester"),
            tc.c.author_id == contact_id,
            _some(target),
        )
        .returning(tc.c.id)
        .cte("comments")
    )

    def about(done: CTE, object_type: str, blanks: dict[str, Any]) -> Select[Any]:
        return select(
            done.c.id.label("object_id"),
            sql.const(object_type).label("object_type"),
            _json_const(blanks).label("blanks"),
        )

    scrub = union_all(
        about(target, "contact", CONTACT_BLANKS),
        about(solo, "activity", ACTIVITY_BLANKS),
        about(comments, "ticket_comment", COMMENT_BLANKS),
    ).cte("scrub")
    s = scrub.alias("s")
    e = _target("events", "e")
    scrubbed = (
        update(e)
        # jsonb_set, not || jsonb_build_object: Citus refuses a STABLE function over columns in an UPDATE
        .values(
            data=func.jsonb_set(
                func.jsonb_set(e.c.data, sql.const("{object}"), _scrubbed(e, s, "object")),
                sql.const("{previous}"),
                _scrubbed(e, s, "previous"),
            )
        )
        .where(e.c.workspace_id == ws, e.c.object_id == s.c.object_id, e.c.object_type == s.c.object_type)
        .returning(e.c.id)
        .cte("scrubbed")
    )
    wa = _target("webhook_attempts", "wa")
    d = sql.table("webhook_deliveries").alias("d")
    # a receiver's answer may echo the payload it was sent
    attempts = (
        update(wa)
        .values(response_body=null())
        .where(
            d.c.workspace_id == ws,
            d.c.event_id.in_(select(scrubbed.c.id)),
            wa.c.workspace_id == ws,
            wa.c.delivery_id == d.c.id,
            wa.c.response_body.is_not(None),
        )
        .returning(wa.c.id)
        .cte("attempts")
    )
    ev = events_cte("events", lambda _: _some(target))

    def count(cte: CTE, name: str) -> Any:
        return select(func.count()).select_from(cte).scalar_subquery().label(name)

    return select(
        count(target, "contacts"),
        count(xids, "external_ids"),
        count(solo, "activities_scrubbed"),
        count(shared, "activities_unlinked"),
        count(comments, "ticket_comments"),
        count(scrubbed, "events"),
        count(attempts, "webhook_attempts"),
    ).add_cte(ev, fanout(ev).cte("fanout"))


_ERASE = sql.Query(_erase)


def _lock_contact() -> Select[Any]:
    c = sql.table("contacts")
    columns = ("id", "email", "first_name", "last_name", "phone", "title", "marketing_consent_source")
    return (
        select(*sql.columns((*columns, "external_ids", "erased_at"), c))
        .where(c.c.workspace_id == sql.param("ws"), c.c.id == sql.param("id"))
        .with_for_update()
    )


_LOCK_CONTACT = sql.Query(_lock_contact)

_IDEMPOTENCY = sql.table("idempotency_keys")
_RESPONSES_SHOWING = sql.Query(
    lambda: select(_IDEMPOTENCY.c.key, _IDEMPOTENCY.c.body).where(
        _IDEMPOTENCY.c.workspace_id == sql.param("ws"),
        func.strpos(_IDEMPOTENCY.c.body, sql.param("needle", Text)) > 0,
    )
)


def _rewrite_responses() -> Update:
    i = _target("idempotency_keys", "i")
    u = (
        func.unnest(sql.param("keys", ARRAY(Text)), sql.param("bodies", ARRAY(Text)))
        .table_valued("key", "body")
        .render_derived(name="u")
    )
    return update(i).values(body=u.c.body).where(i.c.workspace_id == sql.param("ws"), i.c.key == u.c.key)


_REWRITE_RESPONSES = sql.Query(_rewrite_responses)


async def lock_contact(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, contact_id: uuid.UUID
) -> asyncpg.Record | None:
    """The contact's row, locked until commit so no write can slip in between the check and the erase."""
    row: asyncpg.Record | None = await _LOCK_CONTACT.fetchrow(conn, ws=workspace_id, id=contact_id)
    return row


async def erase(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    contact_id: uuid.UUID,
    at: Any,
    event: dict[str, Any],
) -> dict[str, int]:
    row = await _ERASE.fetchrow(
        conn, ws=workspace_id, contact_id=contact_id, at=at, events=jsonutil.dumps_str([event])
    )
    return {k: int(v) for k, v in dict(row).items()}


async def scrub_idempotency_records(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, contact_id: uuid.UUID, values: list[str]
) -> int:
    """Stored responses (kept for Idempotency-Key replays) that show this contact: each personal string
    value, as a whole JSON string, becomes null. The records stay, so a replayed request still cannot run
    twice; it answers with the personal data gone."""
    rows = await _RESPONSES_SHOWING.fetch(conn, ws=workspace_id, needle=str(contact_id))
    needles = [jsonutil.dumps_str(v) for v in values if v]
    changed: list[tuple[str, str]] = []
    for r in rows:
        body = r["body"]
        for needle in needles:
            body = body.replace(needle, "null")
        if body != r["body"]:
            changed.append((r["key"], body))
    if changed:
        await _REWRITE_RESPONSES.execute(
            conn, ws=workspace_id, keys=[k for k, _ in changed], bodies=[b for _, b in changed]
        )
    return len(changed)
