"""activities: notes, calls, emails, meetings and tasks, linked to contacts, companies, deals, tickets

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 12:06:55.313938
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "activities",
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("direction", sa.Text(), nullable=True),
        sa.Column("duration_seconds", sa.BigInteger(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("priority", sa.Text(), nullable=True),
        sa.Column("owner_id", sa.UUID(), nullable=True),
        sa.Column("contact_ids", postgresql.ARRAY(sa.UUID()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("company_ids", postgresql.ARRAY(sa.UUID()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("deal_ids", postgresql.ARRAY(sa.UUID()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("ticket_ids", postgresql.ARRAY(sa.UUID()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column(
            "custom_fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "external_ids",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("search_text", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("direction IN ('inbound', 'outbound')", name=op.f("ck_activities_direction")),
        sa.CheckConstraint("priority IN ('low', 'normal', 'high')", name=op.f("ck_activities_priority")),
        sa.CheckConstraint(
            "type IN ('note', 'call', 'email', 'meeting', 'task')", name=op.f("ck_activities_type")
        ),
        sa.CheckConstraint("duration_seconds >= 0", name=op.f("ck_activities_duration_seconds")),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_activities_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_activities")),
    )
    op.create_index(
        "ix_activities_company_ids", "activities", ["company_ids"], unique=False, postgresql_using="gin"
    )
    op.create_index(
        "ix_activities_completed", "activities", ["workspace_id", "completed_at", "id"], unique=False
    )
    op.create_index(
        "ix_activities_contact_ids", "activities", ["contact_ids"], unique=False, postgresql_using="gin"
    )
    op.create_index("ix_activities_created", "activities", ["workspace_id", "created_at", "id"], unique=False)
    op.create_index(
        "ix_activities_custom_fields",
        "activities",
        ["custom_fields"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"custom_fields": "jsonb_path_ops"},
    )
    op.create_index(
        "ix_activities_deal_ids", "activities", ["deal_ids"], unique=False, postgresql_using="gin"
    )
    op.create_index("ix_activities_due", "activities", ["workspace_id", "due_at", "id"], unique=False)
    op.create_index(
        "ix_activities_occurred", "activities", ["workspace_id", "occurred_at", "id"], unique=False
    )
    op.create_index(
        "ix_activities_open_tasks",
        "activities",
        ["workspace_id", "due_at", "id"],
        unique=False,
        postgresql_where=sa.text("type = 'task' AND completed_at IS NULL"),
    )
    op.create_index(
        "ix_activities_owner", "activities", ["workspace_id", "owner_id", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_activities_search",
        "activities",
        ["search_text"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    op.create_index(
        "ix_activities_ticket_ids", "activities", ["ticket_ids"], unique=False, postgresql_using="gin"
    )
    op.create_index(
        "ix_activities_type", "activities", ["workspace_id", "type", "created_at", "id"], unique=False
    )
    op.create_index("ix_activities_updated", "activities", ["workspace_id", "updated_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_table("activities")  # its indexes go with it
