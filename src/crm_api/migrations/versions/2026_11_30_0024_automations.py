"""Automations, the workers' per-workspace cursor on the event log, round robin turns, automation runs

Revision ID: 0024
Revises: 0020
Create Date: 2026-11-30 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0024"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    jsonb = postgresql.JSONB(astext_type=sa.Text())
    op.create_table(
        "automations",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("trigger", jsonb, nullable=False),
        sa.Column("actions", jsonb, nullable=False),
        sa.Column("external_ids", jsonb, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("search_text", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_automations_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_automations")),
    )
    op.create_index("ix_automations_name", "automations", ["workspace_id", "name", "id"])
    op.create_index("ix_automations_enabled", "automations", ["workspace_id", "enabled", "created_at", "id"])
    op.create_index("ix_automations_created", "automations", ["workspace_id", "created_at", "id"])
    op.create_index("ix_automations_updated", "automations", ["workspace_id", "updated_at", "id"])
    op.create_index(
        "ix_automations_search",
        "automations",
        ["search_text"],
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    op.create_table(
        "automation_cursors",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_automation_cursors_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_automation_cursors")),
    )
    op.create_table(
        "automation_turns",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("automation_id", sa.UUID(), nullable=False),
        sa.Column("action", sa.Integer(), nullable=False),
        sa.Column("turns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id", "automation_id"],
            ["automations.workspace_id", "automations.id"],
            name=op.f("fk_automation_turns_workspace_id_automations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "automation_id", "action", name=op.f("pk_automation_turns")),
    )
    op.create_table(
        "automation_schedules",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("automation_id", sa.UUID(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id", "automation_id"],
            ["automations.workspace_id", "automations.id"],
            name=op.f("fk_automation_schedules_workspace_id_automations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "automation_id", name=op.f("pk_automation_schedules")),
    )
    op.create_table(
        "automation_runs",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("automation_id", sa.UUID(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("object_type", sa.Text(), nullable=False),
        sa.Column("object_id", sa.UUID(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("actions", jsonb, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id", "automation_id"],
            ["automations.workspace_id", "automations.id"],
            name=op.f("fk_automation_runs_workspace_id_automations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_automation_runs")),
    )
    op.create_index(
        "uq_automation_runs_event",
        "automation_runs",
        ["workspace_id", "automation_id", "event_id"],
        unique=True,
    )
    op.create_index(
        "ix_automation_runs_object",
        "automation_runs",
        ["workspace_id", "automation_id", "object_id", "created_at"],
    )
    op.create_index(
        "ix_automation_runs_list", "automation_runs", ["workspace_id", "automation_id", "created_at", "id"]
    )


def downgrade() -> None:
    op.drop_table("automation_runs")
    op.drop_table("automation_turns")
    op.drop_table("automation_schedules")
    op.drop_table("automation_cursors")
    op.drop_table("automations")
