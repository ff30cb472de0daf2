"""events: the feed's bound on a sequence that has drawn nothing yet is 0, not 1

A fresh sequence reads ``last_value = 1`` with ``is_called = false``: nothing has been drawn, and the next
draw gives 1. ``crm_feed_bound()`` answered 1 there, so a stream opened on a database without events started
after sequence 1 and never sent the first event. The bound now counts ``last_value`` only once it was drawn.

Revision ID: 0040
Revises: 0039
Create Date: 2026-12-01 04:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0040"
down_revision: str | None = "0039"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _bound(last: str) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION crm_feed_bound() RETURNS bigint LANGUAGE plpgsql AS $$
        DECLARE
            last bigint;
            lowest bigint;
        BEGIN
            -- first the sequence, then the marks: a writer without a mark now draws above this value
            SELECT {last} INTO last FROM events_sequence_seq;
            SELECT min(((l.classid::bigint - 1163264000) << 32) | l.objid::bigint) INTO lowest
            FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.objsubid = 2
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid::bigint BETWEEN 1163264000 AND 1163264000 + 65535;
            RETURN least(last, lowest - 1);
        END $$
        """


def upgrade() -> None:
    op.execute(_bound("CASE WHEN is_called THEN last_value ELSE last_value - 1 END"))


def downgrade() -> None:
    op.execute(_bound("last_value"))
