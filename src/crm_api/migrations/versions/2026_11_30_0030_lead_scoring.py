"""0030 lead scoring: scoring rules, each contact's points per rule (score_contributions), contacts.score,
and how far the scoring workers have followed each workspace's events (scoring_cursors)

Revision ID: 0030
Revises: 0034
Create Date: 2026-11-30 22:40:00.000000

``contacts.score`` is NOT NULL with a constant default: PostgreSQL adds it without rewriting the table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0030"
down_revision: str | None = "0034"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"],
        ["workspaces.id"],
        name=op.f(f"fk_{table}_workspace_id_workspaces"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.add_column("contacts", sa.Column("score", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.create_index("ix_contacts_score", "contacts", ["workspace_id", "score", "id"], unique=False)
    op.create_table(
        "scoring_rules",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=True),
        sa.Column("condition", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("activity", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'ready'"), nullable=False),
        sa.Column(
            "external_ids",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("search_text", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('building', 'ready')", name=op.f("ck_scoring_rules_status")),
        sa.CheckConstraint(
            "(condition IS NULL) <> (activity IS NULL)", name=op.f("ck_scoring_rules_one_kind")
        ),
        _workspace_fk("scoring_rules"),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_scoring_rules")),
    )
    for name, cols in (
        ("created", ["workspace_id", "created_at", "id"]),
        ("updated", ["workspace_id", "updated_at", "id"]),
        ("name", ["workspace_id", "name", "id"]),
        ("status", ["workspace_id", "status"]),
    ):
        op.create_index(f"ix_scoring_rules_{name}", "scoring_rules", cols, unique=False)
    op.create_index(
        "ix_scoring_rules_search",
        "scoring_rules",
        ["search_text"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    op.create_table(
        "score_contributions",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column("rule_id", sa.UUID(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        _workspace_fk("score_contributions"),
        sa.PrimaryKeyConstraint("workspace_id", "contact_id", "rule_id", name=op.f("pk_score_contributions")),
    )
    op.create_index(
        "ix_score_contributions_rule",
        "score_contributions",
        ["workspace_id", "rule_id", "contact_id"],
        unique=False,
    )
    op.create_table(
        "scoring_cursors",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("walk_after", sa.UUID(), nullable=True),
        sa.Column("walk_versions", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        _workspace_fk("scoring_cursors"),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_scoring_cursors")),
    )


def downgrade() -> None:
    op.drop_table("scoring_cursors")
    op.drop_index("ix_score_contributions_rule", table_name="score_contributions")
    op.drop_table("score_contributions")
    for name in ("search", "status", "name", "updated", "created"):
        op.drop_index(f"ix_scoring_rules_{name}", table_name="scoring_rules")
    op.drop_table("scoring_rules")
    op.drop_index("ix_contacts_score", table_name="contacts")
    op.drop_column("contacts", "score")
