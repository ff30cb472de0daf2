"""Indexes for the reports: deals by pipeline and stage, open deals by expected close date, closed deals by
closed_at, paid orders, tickets by created_at, each covering what its report reads; the stage history's per-deal index
carries the pipeline and stage.

Revision ID: 0015
Revises: 0013
Create Date: 2026-11-30 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_deals_report_pipeline",
        "deals",
        ["workspace_id", "pipeline_id", "stage_id"],
        postgresql_include=["currency", "amount", "owner_id", "archived_at"],
    )
    op.create_index(
        "ix_deals_report_open",
        "deals",
        ["workspace_id", "expected_close_date"],
        postgresql_include=["pipeline_id", "stage_id", "owner_id", "currency", "amount", "archived_at"],
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index(
        "ix_deals_report_closed",
        "deals",
        ["workspace_id", "closed_at"],
        postgresql_include=[
            "status",
            "pipeline_id",
            "owner_id",
            "source",
            "currency",
            "amount",
            "lost_reason",
            "archived_at",
            "created_at",
            "contact_id",
        ],
        postgresql_where=sa.text("closed_at IS NOT NULL"),
    )
    op.create_index(
        "ix_orders_report_paid",
        "orders",
        ["workspace_id", "placed_at"],
        postgresql_include=["contact_id", "created_at", "currency", "total"],
        postgresql_where=sa.text("status IN ('paid', 'fulfilled')"),
    )
    op.drop_index("ix_deal_stage_changes_deal", table_name="deal_stage_changes")
    op.create_index(
        "ix_deal_stage_changes_deal",
        "deal_stage_changes",
        ["workspace_id", "deal_id", "changed_at", "id"],
        postgresql_include=["pipeline_id", "to_stage_id"],
    )
    op.create_index(
        "ix_tickets_report_created",
        "tickets",
        ["workspace_id", "created_at"],
        postgresql_include=[
            "priority",
            "assignee_id",
            "channel",
            "first_responded_at",
            "solved_at",
            "first_response_due_at",
            "resolution_due_at",
            "first_response_breached_at",
            "resolution_breached_at",
            "archived_at",
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_orders_report_paid", table_name="orders")
    op.drop_index("ix_tickets_report_created", table_name="tickets")
    op.drop_index("ix_deal_stage_changes_deal", table_name="deal_stage_changes")
    op.create_index(
        "ix_deal_stage_changes_deal", "deal_stage_changes", ["workspace_id", "deal_id", "changed_at", "id"]
    )
    op.drop_index("ix_deals_report_closed", table_name="deals")
    op.drop_index("ix_deals_report_open", table_name="deals")
    op.drop_index("ix_deals_report_pipeline", table_name="deals")
