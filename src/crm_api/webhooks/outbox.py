"""The dispatcher's statements over the delivery queue: claim due deliveries, lease the run queued behind
one at a ``per_object`` endpoint (and release what was not sent), record outcomes, park and unpark a
disabled endpoint's backlog."""

from __future__ import annotations

import typing
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Float,
    FromClause,
    Integer,
    Interval,
    Table,
    Text,
    Update,
    and_,
    any_,
    case,
    cast,
    column,
    false,
    func,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, insert
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.sql.selectable import Alias

from .. import sql
from ..models.webhooks import DISABLED_FAILING, DISABLED_GONE

_DELIVERIES = sql.table("webhook_deliveries")
_ENDPOINTS = sql.table("webhook_endpoints")
_ATTEMPTS = sql.table("webhook_attempts")
_EVENTS = sql.table("events")

# Constants written into the statements' text rather than sent as parameters: the partial indexes the claim
# walks hold ``status = 'pending'`` rows, and a cached generic plan can use them only when the query's own
# text implies that predicate.
_PENDING = sql.const("pending")
_ENABLED = sql.const("enabled")
_DISABLED = sql.const("disabled")
_SUCCEEDED = sql.const("succeeded")
_INFINITY = sql.const("infinity", DateTime(timezone=True))
# an endpoint failing this long is disabled
_FAILING_TOO_LONG = cast(sql.const("5 days"), Interval)
# ``n * interval '1 second'``: make_interval(secs => n) as Core can say it (no named-argument calls)
_SECOND = cast(sql.const("1 second"), Interval)


def _target(table: Table, name: str) -> Alias:
    """``UPDATE table AS name``: ``Table.alias`` is typed as a named FROM clause, which ``update`` refuses."""
    return typing.cast(Alias, table.alias(name))


def _job(w: Alias, e: FromClause, ep: FromClause) -> list[ColumnElement[Any]]:
    """What a claim returns for each delivery it leases: all an attempt needs."""
    return [
        w.c.workspace_id,
        w.c.id,
        w.c.endpoint_id,
        w.c.object_id,
        w.c.attempts,
        e.c.id.label("event_id"),
        e.c.type,
        e.c.created_at,
        e.c.sequence,
        cast(e.c.data, Text).label("data"),  # spliced into the body as stored (see body_of)
        ep.c.url,
        ep.c.secret,
        ep.c.previous_secret,
        ep.c.previous_secret_expires_at,
        ep.c.ordering,
    ]


def _lease(w: Alias) -> dict[str, Any]:
    return {
        "leased_until": func.now() + sql.param("lease_seconds", Float) * _SECOND,
        "attempts": w.c.attempts + sql.const(1),
    }


def _claim() -> ReturningUpdate[Any]:
    """Walks the queues, not the whole backlog: a loose index scan over ix_webhook_deliveries_queue finds each
    endpoint with pending deliveries (one probe per endpoint), then takes each one's oldest due deliveries up
    to the room this dispatcher has for it. A big backlog for an endpoint at its cap is never scanned, so it
    costs a healthy endpoint nothing; the oldest due deliveries across endpoints go first. Deliveries of a
    disabled endpoint are parked at next_attempt_at = 'infinity' and cost one probe.

    Parameters: ``limit`` (deliveries to claim), ``busy_ids``/``busy_counts`` (requests in flight per
    endpoint), ``per_endpoint`` (the cap), ``lease_seconds``."""
    d = _DELIVERIES.alias("d")
    ep = _ENDPOINTS.alias("ep")
    # the first endpoint with pending deliveries, then each next one: one index probe per endpoint
    first = (
        select(d.c.workspace_id, d.c.endpoint_id)
        .where(d.c.status == _PENDING)
        .order_by(d.c.endpoint_id)
        .limit(sql.const(1))
    )
    queues = first.cte("queues", recursive=True)
    q = queues.alias("q")
    nxt = (
        select(d.c.workspace_id, d.c.endpoint_id)
        .where(d.c.status == _PENDING, d.c.endpoint_id > q.c.endpoint_id)
        .order_by(d.c.endpoint_id)
        .limit(sql.const(1))
        .lateral("nxt")
    )
    q = queues.union_all(select(nxt.c.workspace_id, nxt.c.endpoint_id).select_from(q.join(nxt, true())))

    busy = (
        func.unnest(sql.param("busy_ids", ARRAY(UUID)), sql.param("busy_counts", ARRAY(Integer)))
        .table_valued(column("endpoint_id"), column("n", Integer))
        .render_derived(name="busy")
    )
    free = sql.param("per_endpoint", Integer) - func.coalesce(busy.c.n, sql.const(0))
    room = (
        select(q.c.workspace_id, q.c.endpoint_id, ep.c.ordering, free.label("n"))
        .select_from(
            q.join(ep, and_(ep.c.workspace_id == q.c.workspace_id, ep.c.id == q.c.endpoint_id)).outerjoin(
                busy, busy.c.endpoint_id == q.c.endpoint_id
            )
        )
        .where(ep.c.status == _ENABLED, free > sql.const(0))
        .cte("room")
    )

    p = _DELIVERIES.alias("p")
    earlier_pending = (
        select(sql.const(1))
        .where(
            p.c.endpoint_id == d.c.endpoint_id,
            p.c.object_id == d.c.object_id,
            p.c.status == _PENDING,
            p.c.event_sequence < d.c.event_sequence,
        )
        .exists()
    )
    per_room = (
        select(d.c.workspace_id, d.c.id, d.c.next_attempt_at)
        .where(
            d.c.endpoint_id == room.c.endpoint_id,
            d.c.status == _PENDING,
            d.c.next_attempt_at <= func.now(),
            or_(d.c.leased_until.is_(None), d.c.leased_until < func.now()),
            or_(room.c.ordering == sql.const("none"), ~earlier_pending),
        )
        .order_by(d.c.next_attempt_at)
        .limit(room.c.n)
        .with_for_update(of=d, skip_locked=True)
        .lateral("d")
    )
    due = (
        select(per_room.c.workspace_id, per_room.c.id)
        .select_from(room.join(per_room, true()))
        .order_by(per_room.c.next_attempt_at)
        .limit(sql.param("limit", Integer))
        .cte("due")
    )

    w = _target(_DELIVERIES, "w")
    e = _EVENTS.alias("e")
    return (
        update(w)
        .values(_lease(w))
        .where(
            w.c.workspace_id == due.c.workspace_id,
            w.c.id == due.c.id,
            e.c.workspace_id == w.c.workspace_id,
            e.c.id == w.c.event_id,
            ep.c.workspace_id == w.c.workspace_id,
            ep.c.id == w.c.endpoint_id,
        )
        .returning(*_job(w, e, ep))
    )


CLAIM = sql.Query(_claim)


def _lease_run() -> ReturningUpdate[Any]:
    """Leases the deliveries queued behind one at a ``per_object`` endpoint: the object's next pending ones
    there after event ``after_sequence``, in event order, up to ``run`` of them, stopping before the first
    that is not due or is leased (a run has no gaps). Only the dispatcher sending the one in front takes
    them (no claim does while it is pending), so it can send each the moment the one before it succeeded.
    The rows are locked in event order and the run is cut under the locks.

    Parameters: ``ws``, ``endpoint_id``, ``object_id``, ``after_sequence``, ``run``, ``lease_seconds``."""
    d = _DELIVERIES.alias("d")
    behind = (
        select(d.c.workspace_id, d.c.id, d.c.event_sequence, d.c.next_attempt_at, d.c.leased_until)
        .where(
            d.c.workspace_id == sql.param("ws"),
            d.c.endpoint_id == sql.param("endpoint_id"),
            d.c.object_id == sql.param("object_id"),
            d.c.status == _PENDING,
            d.c.event_sequence > sql.param("after_sequence", BigInteger),
        )
        .order_by(d.c.event_sequence)
        .limit(sql.param("run", Integer))
        .with_for_update(of=d)
        .subquery("behind")
    )
    ready = and_(
        behind.c.next_attempt_at <= func.now(),
        or_(behind.c.leased_until.is_(None), behind.c.leased_until < func.now()),
    )
    run = select(
        behind.c.workspace_id,
        behind.c.id,
        func.bool_and(ready).over(order_by=behind.c.event_sequence).label("unbroken"),
    ).cte("run")
    w = _target(_DELIVERIES, "w")
    e = _EVENTS.alias("e")
    ep = _ENDPOINTS.alias("ep")
    return (
        update(w)
        .values(_lease(w))
        .where(
            w.c.workspace_id == run.c.workspace_id,
            w.c.id == run.c.id,
            run.c.unbroken,
            e.c.workspace_id == w.c.workspace_id,
            e.c.id == w.c.event_id,
            ep.c.workspace_id == w.c.workspace_id,
            ep.c.id == w.c.endpoint_id,
            ep.c.status == _ENABLED,
        )
        .returning(*_job(w, e, ep), w.c.leased_until)
    )


LEASE_RUN = sql.Query(_lease_run)


def _release() -> Update:
    """Hands back leased deliveries that were not sent (a run cut short): the lease is cleared and the
    attempt the lease counted is taken back. A lease that is no longer ours (it ran out and was taken
    again) is left alone.

    Parameters: ``ws_ids``, ``ids``, ``leases`` (each delivery's leased_until as the lease returned it)."""
    given = (
        func.unnest(
            sql.param("ws_ids", ARRAY(UUID)),
            sql.param("ids", ARRAY(UUID)),
            sql.param("leases", ARRAY(DateTime(timezone=True))),
        )
        .table_valued(column("workspace_id"), column("id"), column("leased_until"))
        .render_derived(name="r")
    )
    w = _target(_DELIVERIES, "w")
    return (
        update(w)
        .values(leased_until=null(), attempts=w.c.attempts - sql.const(1))
        .where(
            w.c.workspace_id == given.c.workspace_id,
            w.c.id == given.c.id,
            w.c.leased_until == given.c.leased_until,
            w.c.status == _PENDING,
        )
    )


RELEASE = sql.Query(_release)


def _record() -> ReturningUpdate[Any]:
    """Records a batch of outcomes in one statement: the attempts, their deliveries, and the endpoints whose
    health changed (failing since, disabled after 5 days failing or on 410 Gone; a disable raises the
    endpoint's version and sets updated_at, as the API's own writes do). Returns those endpoints.

    Parameter: ``outcomes``, a JSON array of ``Outcome`` rows."""
    given = (
        func.jsonb_to_recordset(sql.param("outcomes", JSONB))
        .table_valued(
            column("workspace_id", UUID),
            column("id", UUID),
            column("endpoint_id", UUID),
            column("attempted_at", DateTime(timezone=True)),
            column("status_code", Integer),
            column("latency_ms", Integer),
            column("error", Text),
            column("response_body", Text),
            column("outcome", Text),
            column("next_attempt_at", DateTime(timezone=True)),
        )
        .render_derived(name="r", with_types=True)
    )
    r = select(given).cte("r")  # parsed once, read by the three statements below

    w = _target(_DELIVERIES, "w")
    deliveries = (
        update(w)
        .values(
            status=case((r.c.outcome == sql.const("retry"), _PENDING), else_=r.c.outcome),
            next_attempt_at=func.coalesce(r.c.next_attempt_at, w.c.next_attempt_at),
            leased_until=null(),
            last_status_code=r.c.status_code,
            last_error=r.c.error,
            delivered_at=case((r.c.outcome == _SUCCEEDED, r.c.attempted_at), else_=w.c.delivered_at),
        )
        .where(w.c.workspace_id == r.c.workspace_id, w.c.id == r.c.id)
        .returning(w.c.workspace_id, w.c.id)
        .cte("d")
    )

    a = _ATTEMPTS
    attempts = (
        insert(a)
        .from_select(
            [
                "workspace_id",
                "id",
                "delivery_id",
                "attempted_at",
                "status_code",
                "latency_ms",
                "error",
                "response_body",
            ],
            select(
                r.c.workspace_id,
                func.gen_random_uuid(),
                r.c.id,
                r.c.attempted_at,
                r.c.status_code,
                r.c.latency_ms,
                r.c.error,
                r.c.response_body,
            )
            # only for deliveries still there: one whose endpoint was deleted while it was in flight
            # has nothing to log on (and would fail the whole batch's foreign key, for good)
            .select_from(
                r.join(
                    deliveries, and_(deliveries.c.workspace_id == r.c.workspace_id, deliveries.c.id == r.c.id)
                )
            ),
        )
        .cte("a")
    )

    s = (
        select(
            r.c.workspace_id,
            r.c.endpoint_id,
            func.bool_or(r.c.outcome == _SUCCEEDED, type_=Boolean).label("ok"),
            func.coalesce(func.bool_or(r.c.status_code == sql.const(410), type_=Boolean), false()).label(
                "gone"
            ),
            func.min(r.c.attempted_at).label("first_failure"),
            # the cutoff is a column here so that no clock function sits inside CASE below (Citus
            # refuses that)
            (func.now() - _FAILING_TOO_LONG).label("failing_too_long"),
            func.now().label("now"),  # a column too, for updated_at below (no clock function in CASE)
        )
        .group_by(r.c.workspace_id, r.c.endpoint_id)
        .cte("s")
    )

    e = _target(_ENDPOINTS, "e")
    failed_too_long = and_(~s.c.ok, e.c.failing_since < s.c.failing_too_long)
    status = case((or_(s.c.gone, failed_too_long), _DISABLED), else_=e.c.status)
    reason = case(
        (s.c.gone, sql.const(DISABLED_GONE)),
        (failed_too_long, sql.const(DISABLED_FAILING)),
        else_=e.c.disabled_reason,
    )
    # status and disabled_reason are part of the endpoint as the API shows it: changing either is a new
    # version (so an ETag held from before no longer passes If-Match, nor gets a 304), like any API write.
    # failing_since is not shown, and moves with the first failure and the next success: no new version.
    shown_changed = or_(status != e.c.status, reason.is_distinct_from(e.c.disabled_reason))
    return (
        update(e)
        .values(
            failing_since=case((s.c.ok, null()), else_=func.coalesce(e.c.failing_since, s.c.first_failure)),
            status=status,
            disabled_reason=reason,
            version=e.c.version + case((shown_changed, sql.const(1)), else_=sql.const(0)),
            updated_at=case((shown_changed, s.c.now), else_=e.c.updated_at),
        )
        .where(
            e.c.workspace_id == s.c.workspace_id,
            e.c.id == s.c.endpoint_id,
            or_(
                s.c.gone,
                and_(s.c.ok, e.c.failing_since.is_not(None)),
                and_(~s.c.ok, e.c.failing_since.is_(None)),
                failed_too_long,
            ),
        )
        .returning(e.c.workspace_id, e.c.id, e.c.status)
        .add_cte(attempts, deliveries)
    )


RECORD = sql.Query(_record)


def _park() -> Update:
    """Parks the pending deliveries of disabled endpoints (``ws``, ``endpoint_ids``) out of the claim."""
    d = _DELIVERIES
    return (
        update(d)
        .values(next_attempt_at=_INFINITY)
        .where(
            d.c.workspace_id == sql.param("ws"),
            d.c.endpoint_id == any_(sql.param("endpoint_ids", ARRAY(UUID))),
            d.c.status == _PENDING,
        )
    )


def _unpark() -> Update:
    """Lets a re-enabled endpoint's (``ws``, ``endpoint_id``) parked backlog flow again."""
    d = _DELIVERIES
    return (
        update(d)
        .values(next_attempt_at=func.now())
        .where(
            d.c.workspace_id == sql.param("ws"),
            d.c.endpoint_id == sql.param("endpoint_id"),
            d.c.status == _PENDING,
            d.c.next_attempt_at == _INFINITY,
        )
    )


PARK = sql.Query(_park)
UNPARK = sql.Query(_unpark)
