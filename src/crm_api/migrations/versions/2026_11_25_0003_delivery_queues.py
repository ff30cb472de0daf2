"""delivery queues: per-endpoint queue index for the claim; queue-table autovacuum settings

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The claim walks each endpoint's queue instead of one global due-order index: with a global index,
    # an endpoint at its in-flight cap with a large backlog had its whole backlog scanned by every claim.
    op.create_index(
        "ix_webhook_deliveries_queue",
        "webhook_deliveries",
        ["endpoint_id", "next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index(
        "ix_webhook_deliveries_due",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("status = 'pending'"),
    )
    # A queue table: rows churn all day. Keep its statistics and dead tuples fresh so the claim's probes
    # stay cheap.
    op.execute(
        "ALTER TABLE webhook_deliveries SET (autovacuum_vacuum_scale_factor = 0.01, "
        "autovacuum_analyze_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0)"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE webhook_deliveries RESET (autovacuum_vacuum_scale_factor, "
        "autovacuum_analyze_scale_factor, autovacuum_vacuum_cost_delay)"
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index(
        "ix_webhook_deliveries_queue",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("status = 'pending'"),
    )
