"""0019 segments: saved sets of contacts, companies or deals, their members, membership history, and
how far the segment workers have followed each workspace's events (segment_cursors)

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 14:45:32.260637
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segment_cursors",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_segment_cursors_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_segment_cursors")),
    )
    op.create_table(
        "segments",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("object_type", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("filter", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("member_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
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
        sa.CheckConstraint("kind IN ('dynamic', 'static')", name=op.f("ck_segments_kind")),
        sa.CheckConstraint(
            "object_type IN ('contact', 'company', 'deal')", name=op.f("ck_segments_object_type")
        ),
        sa.CheckConstraint("status IN ('building', 'ready')", name=op.f("ck_segments_status")),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_segments_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_segments")),
    )
    op.create_index("ix_segments_created", "segments", ["workspace_id", "created_at", "id"], unique=False)
    op.create_index(
        "ix_segments_dynamic_live",
        "segments",
        ["workspace_id", "object_type"],
        unique=False,
        postgresql_where=sa.text("kind = 'dynamic' AND archived_at IS NULL"),
    )
    op.create_index("ix_segments_kind", "segments", ["workspace_id", "kind"], unique=False)
    op.create_index(
        "ix_segments_member_count", "segments", ["workspace_id", "member_count", "id"], unique=False
    )
    op.create_index("ix_segments_name", "segments", ["workspace_id", "name", "id"], unique=False)
    op.create_index("ix_segments_object_type", "segments", ["workspace_id", "object_type"], unique=False)
    op.create_index(
        "ix_segments_search",
        "segments",
        ["search_text"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    op.create_index("ix_segments_status", "segments", ["workspace_id", "status"], unique=False)
    op.create_index("ix_segments_updated", "segments", ["workspace_id", "updated_at", "id"], unique=False)
    op.create_table(
        "segment_changes",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("segment_id", sa.UUID(), nullable=False),
        sa.Column("object_id", sa.UUID(), nullable=False),
        sa.Column("change", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("change IN ('added', 'removed')", name=op.f("ck_segment_changes_change")),
        sa.ForeignKeyConstraint(
            ["workspace_id", "segment_id"],
            ["segments.workspace_id", "segments.id"],
            name=op.f("fk_segment_changes_workspace_id_segment_id_segments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_segment_changes")),
    )
    op.create_index(
        "ix_segment_changes_segment", "segment_changes", ["workspace_id", "segment_id", "id"], unique=False
    )
    op.create_table(
        "segment_members",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("segment_id", sa.UUID(), nullable=False),
        sa.Column("object_id", sa.UUID(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id", "segment_id"],
            ["segments.workspace_id", "segments.id"],
            name=op.f("fk_segment_members_workspace_id_segment_id_segments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "segment_id", "object_id", name=op.f("pk_segment_members")),
    )
    op.create_index(
        "ix_segment_members_object",
        "segment_members",
        ["workspace_id", "object_id", "segment_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_segment_members_object", table_name="segment_members")
    op.drop_table("segment_members")
    op.drop_index("ix_segment_changes_segment", table_name="segment_changes")
    op.drop_table("segment_changes")
    op.drop_index("ix_segments_updated", table_name="segments")
    op.drop_index("ix_segments_status", table_name="segments")
    op.drop_index(
        "ix_segments_search",
        table_name="segments",
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    op.drop_index("ix_segments_object_type", table_name="segments")
    op.drop_index("ix_segments_name", table_name="segments")
    op.drop_index("ix_segments_member_count", table_name="segments")
    op.drop_index("ix_segments_kind", table_name="segments")
    op.drop_index(
        "ix_segments_dynamic_live",
        table_name="segments",
        postgresql_where=sa.text("kind = 'dynamic' AND archived_at IS NULL"),
    )
    op.drop_index("ix_segments_created", table_name="segments")
    op.drop_table("segments")
    op.drop_table("segment_cursors")
