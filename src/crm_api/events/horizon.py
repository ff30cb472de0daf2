"""The feed's horizon: which committed events ``GET /v1/events`` may show without a reader skipping one.

An event's sequence is drawn when it is inserted and becomes visible when its transaction commits, so a
writer that commits late can add an event below a sequence a reader already passed. The feed shows an event
only when its transaction (``events.txid``) is older than every running transaction that may still commit
an event: ``txid < horizon``, the horizon being the oldest of those (the snapshot's xmax if there is none).

Which transactions may still commit an event: one that inserted an event holds a ``RowExclusiveLock`` on
``events`` until it ends (the lock is taken before the row's sequence is drawn), so of the transactions the
reader's snapshot sees running, those holding that lock now, in this database. One that takes the lock
later draws a sequence above every sequence drawn so far. A transaction that ended between the snapshot and
the look at ``pg_locks`` counts too (its events are not in the snapshot), and so does every running one on
a standby, where the primary's locks cannot be seen. Transactions in other databases, reports, idle
sessions and ``pg_dump`` hold no such lock and no longer empty the feed (with ``pg_snapshot_xmin`` they did,
for as long as they ran).

This is the old rule (``txid < pg_snapshot_xmin``) narrowed to the transactions that matter, and it relies
as the old one did on ids and sequences being drawn in the same order. They are not when a writer takes its
id early (a row lock, an Idempotency-Key record), a second writer takes a later id and draws a sequence,
and the first then draws a higher one and commits while the second is still open: the first one's event is
shown, and the second one's lands behind it.

The horizon is an uncorrelated subquery: computed once per page, before the index scan it filters, and
``pg_locks`` is read only when the snapshot has a running transaction at all.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, Select, and_, cast, column, func, or_, select, table
from sqlalchemy.dialects.postgresql import REGCLASS

from .. import sql

_LOCKS = table(
    "pg_locks",
    column("locktype"),
    column("database"),
    column("relation"),
    column("transactionid"),
    column("virtualtransaction"),
    column("mode"),
    column("granted"),
)
_DATABASES = table("pg_database", column("oid"), column("datname"))


def _event_writers() -> Select[Any]:
    """The transaction ids (with their subtransactions') of every transaction holding a write lock on
    ``events`` in this database now; one read of ``pg_locks``, grouped by transaction."""
    lock = _LOCKS.alias("l")
    here = select(_DATABASES.c.oid).where(_DATABASES.c.datname == func.current_database())
    own_id = and_(lock.c.locktype == "transactionid", lock.c.mode == "ExclusiveLock", lock.c.granted)
    writes_events = and_(
        lock.c.locktype == "relation",
        lock.c.database == here.scalar_subquery(),
        lock.c.relation == cast(sql.const(str(sql.table("events").name)), REGCLASS),
        lock.c.mode == "RowExclusiveLock",
    )
    return (
        select(func.unnest(func.array_agg(lock.c.transactionid).filter(lock.c.locktype == "transactionid")))
        .where(or_(own_id, writes_events))
        .group_by(lock.c.virtualtransaction)
        .having(func.bool_or(lock.c.locktype == "relation"))
    )


def horizon() -> ScalarSelect[Any]:
    """The oldest running transaction that may still commit an event, or the snapshot's xmax if none."""
    snapshot = func.pg_current_snapshot()
    running = func.pg_snapshot_xip(snapshot).column_valued("x")
    may_add_events = or_(
        func.pg_is_in_recovery(),
        func.pg_xact_status(running) != "in progress",
        func.xid(running).in_(_event_writers()),
    )
    return (
        select(func.coalesce(func.min(running), func.pg_snapshot_xmax(snapshot)))
        .where(may_add_events)
        .scalar_subquery()
    )


def settled(txid: ColumnElement[Any]) -> ColumnElement[bool]:
    """Whether an event written by transaction ``txid`` may be shown: no older transaction that may still
    commit an event is running."""
    return txid < horizon()
