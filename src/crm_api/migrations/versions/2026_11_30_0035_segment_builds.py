"""Chunked, resumable segment builds: segment_builds keeps a build's position; a segment may be failed

Revision ID: 0035
Revises: 0033
Create Date: 2026-11-30 23:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0035"
down_revision: str | None = "0033"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segment_builds",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("segment_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("after", sa.UUID(), nullable=True),
        sa.Column("failures", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id", "segment_id"],
            ["segments.workspace_id", "segments.id"],
            name=op.f("fk_segment_builds_workspace_id_segment_id_segments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "segment_id", name=op.f("pk_segment_builds")),
    )
    op.drop_constraint(op.f("ck_segments_status"), "segments", type_="check")
    op.create_check_constraint("status", "segments", "status IN ('building', 'ready', 'failed')")


def downgrade() -> None:
    op.execute("UPDATE segments SET status = 'building' WHERE status = 'failed'")
    op.drop_constraint(op.f("ck_segments_status"), "segments", type_="check")
    op.create_check_constraint("status", "segments", "status IN ('building', 'ready')")
    op.drop_table("segment_builds")
