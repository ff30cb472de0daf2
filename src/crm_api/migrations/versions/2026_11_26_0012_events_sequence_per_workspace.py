"""events sequence unique per workspace: the global unique index becomes (workspace_id, sequence)

Citus accepts a unique index on a distributed table only when it holds the distribution column, and the
events table is distributed by workspace_id. Every reader of the sequence (the feed, history, webhook
ordering) already filters by workspace, so the new index serves them as the old non-unique one did.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("uq_events_workspace_sequence", "events", ["workspace_id", "sequence"], unique=True)
    op.drop_index("ix_events_workspace_sequence", table_name="events")
    op.drop_index("uq_events_sequence", table_name="events")


def downgrade() -> None:
    op.create_index("uq_events_sequence", "events", ["sequence"], unique=True)
    op.create_index("ix_events_workspace_sequence", "events", ["workspace_id", "sequence"], unique=False)
    op.drop_index("uq_events_workspace_sequence", table_name="events")
