"""events: writers mark the sequence value before drawing theirs; the feed's bound reads the marks

``crm_mark_event_draw()`` runs once in every statement that inserts events, before its sequences are drawn:
it takes a shared transaction-level advisory lock whose key is the sequence's last value (a lower bound of
what this transaction will draw), held to commit. ``crm_feed_bound()`` gives the highest sequence a reader may
show: the sequence's last value, read first, and below the lowest mark of a running writer, read second.
Why and how the feed uses it: src/crm_api/events/horizon.py.

Marks use the two-key form of advisory locks, first key 0x4556xxxx (the sequence's high 16 bits of 48 in
its low bits), second key the low 32 bits, so they never meet the one-key locks the application takes.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 12:45:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION crm_mark_event_draw() RETURNS boolean LANGUAGE plpgsql AS $$
        DECLARE
            last bigint;
        BEGIN
            SELECT last_value INTO last FROM events_sequence_seq;
            PERFORM pg_advisory_xact_lock_shared(
                (1163264000 | ((last >> 32) & 65535))::int, last::bit(32)::int);
            RETURN true;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION crm_feed_bound() RETURNS bigint LANGUAGE plpgsql AS $$
        DECLARE
            last bigint;
            lowest bigint;
        BEGIN
            -- first the sequence, then the marks: a writer without a mark now draws above this value
            SELECT last_value INTO last FROM events_sequence_seq;
            SELECT min(((l.classid::bigint - 1163264000) << 32) | l.objid::bigint) INTO lowest
            FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.objsubid = 2
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid::bigint BETWEEN 1163264000 AND 1163264000 + 65535;
            RETURN least(last, lowest - 1);
        END $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION crm_feed_bound()")
    op.execute("DROP FUNCTION crm_mark_event_draw()")
