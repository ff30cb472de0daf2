"""tickets and slas: SLA policies, tickets (with the breach scan's partial indexes), ticket comments

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 12:08:54.992105
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sla_policies",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("hours", sa.Text(), server_default=sa.text("'calendar'"), nullable=False),
        sa.Column("time_zone", sa.Text(), server_default=sa.text("'UTC'"), nullable=False),
        sa.Column(
            "schedule",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "targets", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False
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
        sa.CheckConstraint("hours IN ('calendar', 'business')", name=op.f("ck_sla_policies_hours")),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_sla_policies_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_sla_policies")),
    )
    op.create_index(
        "ix_sla_policies_created", "sla_policies", ["workspace_id", "created_at", "id"], unique=False
    )
    op.create_index("ix_sla_policies_hours", "sla_policies", ["workspace_id", "hours"], unique=False)
    op.create_index(
        "ix_sla_policies_is_default", "sla_policies", ["workspace_id", "is_default"], unique=False
    )
    op.create_index("ix_sla_policies_name", "sla_policies", ["workspace_id", "name", "id"], unique=False)
    op.create_index(
        "ix_sla_policies_search",
        "sla_policies",
        ["search_text"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    op.create_index("ix_sla_policies_time_zone", "sla_policies", ["workspace_id", "time_zone"], unique=False)
    op.create_index(
        "ix_sla_policies_updated", "sla_policies", ["workspace_id", "updated_at", "id"], unique=False
    )
    op.create_index(
        "uq_sla_policies_default_live",
        "sla_policies",
        ["workspace_id"],
        unique=True,
        postgresql_where=sa.text("is_default AND archived_at IS NULL"),
    )
    op.create_table(
        "tickets",
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'new'"), nullable=False),
        sa.Column("priority", sa.Text(), server_default=sa.text("'normal'"), nullable=False),
        sa.Column("channel", sa.Text(), server_default=sa.text("'api'"), nullable=False),
        sa.Column("requester_id", sa.UUID(), nullable=True),
        sa.Column("company_id", sa.UUID(), nullable=True),
        sa.Column("assignee_id", sa.UUID(), nullable=True),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
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
        sa.Column("sla_policy_id", sa.UUID(), nullable=True),
        sa.Column("first_responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("solved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_breached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_breached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_paused_seconds", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("search_text", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "channel IN ('email', 'phone', 'chat', 'web', 'api')", name=op.f("ck_tickets_channel")
        ),
        sa.CheckConstraint(
            "priority IN ('low', 'normal', 'high', 'urgent')", name=op.f("ck_tickets_priority")
        ),
        sa.CheckConstraint(
            "status IN ('new', 'open', 'pending', 'on_hold', 'solved', 'closed')",
            name=op.f("ck_tickets_status"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id", "company_id"],
            ["companies.workspace_id", "companies.id"],
            name=op.f("fk_tickets_workspace_id_company_id_companies"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id", "requester_id"],
            ["contacts.workspace_id", "contacts.id"],
            name=op.f("fk_tickets_workspace_id_requester_id_contacts"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id", "sla_policy_id"],
            ["sla_policies.workspace_id", "sla_policies.id"],
            name=op.f("fk_tickets_workspace_id_sla_policy_id_sla_policies"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_tickets_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_tickets")),
    )
    op.create_index(
        "ix_tickets_assignee", "tickets", ["workspace_id", "assignee_id", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_tickets_channel", "tickets", ["workspace_id", "channel", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_tickets_company", "tickets", ["workspace_id", "company_id", "created_at", "id"], unique=False
    )
    op.create_index("ix_tickets_created", "tickets", ["workspace_id", "created_at", "id"], unique=False)
    op.create_index(
        "ix_tickets_custom_fields",
        "tickets",
        ["custom_fields"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"custom_fields": "jsonb_path_ops"},
    )
    op.create_index(
        "ix_tickets_first_responded", "tickets", ["workspace_id", "first_responded_at"], unique=False
    )
    op.create_index(
        "ix_tickets_first_response_breached",
        "tickets",
        ["workspace_id", "first_response_breached_at"],
        unique=False,
    )
    op.create_index(
        "ix_tickets_first_response_due", "tickets", ["workspace_id", "first_response_due_at"], unique=False
    )
    op.create_index(
        "ix_tickets_first_response_unbreached",
        "tickets",
        ["first_response_due_at"],
        unique=False,
        postgresql_where=sa.text(
            "first_response_breached_at IS NULL AND first_responded_at IS NULL AND first_response_due_at IS NOT NULL AND archived_at IS NULL AND status IN ('new', 'open', 'pending', 'on_hold')"
        ),
    )
    op.create_index(
        "ix_tickets_priority", "tickets", ["workspace_id", "priority", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_tickets_requester", "tickets", ["workspace_id", "requester_id", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_tickets_resolution_breached", "tickets", ["workspace_id", "resolution_breached_at"], unique=False
    )
    op.create_index(
        "ix_tickets_resolution_due", "tickets", ["workspace_id", "resolution_due_at"], unique=False
    )
    op.create_index(
        "ix_tickets_resolution_unbreached",
        "tickets",
        ["resolution_due_at"],
        unique=False,
        postgresql_where=sa.text(
            "resolution_breached_at IS NULL AND resolution_due_at IS NOT NULL AND archived_at IS NULL AND status IN ('new', 'open')"
        ),
    )
    op.create_index(
        "ix_tickets_search",
        "tickets",
        ["search_text"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    op.create_index(
        "ix_tickets_sla_policy",
        "tickets",
        ["workspace_id", "sla_policy_id", "created_at", "id"],
        unique=False,
    )
    op.create_index("ix_tickets_solved", "tickets", ["workspace_id", "solved_at"], unique=False)
    op.create_index(
        "ix_tickets_status", "tickets", ["workspace_id", "status", "created_at", "id"], unique=False
    )
    op.create_index("ix_tickets_subject", "tickets", ["workspace_id", "subject"], unique=False)
    op.create_index("ix_tickets_tags", "tickets", ["tags"], unique=False, postgresql_using="gin")
    op.create_index("ix_tickets_updated", "tickets", ["workspace_id", "updated_at", "id"], unique=False)
    op.create_table(
        "ticket_comments",
        sa.Column("ticket_id", sa.UUID(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("public", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("author_type", sa.Text(), nullable=False),
        sa.Column("author_id", sa.UUID(), nullable=True),
        sa.Column("api_key_id", sa.UUID(), nullable=True),
        sa.Column("search_text", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "author_type IN ('agent', 'requester')", name=op.f("ck_ticket_comments_author_type")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id", "ticket_id"],
            ["tickets.workspace_id", "tickets.id"],
            name=op.f("fk_ticket_comments_workspace_id_ticket_id_tickets"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_ticket_comments_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_ticket_comments")),
    )
    op.create_index(
        "ix_ticket_comments_ticket",
        "ticket_comments",
        ["workspace_id", "ticket_id", "created_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    # dropping a table drops its indexes and constraints
    op.drop_table("ticket_comments")
    op.drop_table("tickets")
    op.drop_table("sla_policies")
