"""Bulk jobs: imports with their file parts and row errors, exports with theirs

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 11:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _job_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("object_type", sa.Text(), nullable=False),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("lease_token", sa.UUID(), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    ]


def _counter(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False)


def _parts(table: str, job_table: str, job_column: str) -> None:
    op.create_table(
        table,
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column(job_column, sa.UUID(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id", job_column],
            [f"{job_table}.workspace_id", f"{job_table}.id"],
            name=op.f(f"fk_{table}_workspace_id_{job_column}_{job_table}"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", job_column, "part", name=op.f(f"pk_{table}")),
    )


def upgrade() -> None:
    op.create_table(
        "imports",
        *_job_columns(),
        sa.Column("mapping", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("upsert_key", sa.Text(), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        _counter("parts"),
        sa.Column("bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("columns", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("unmapped", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("rows_total", sa.Integer(), nullable=True),
        _counter("rows_done"),
        _counter("created"),
        _counter("updated"),
        _counter("unchanged"),
        _counter("failed"),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_imports_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_imports")),
    )
    op.create_index("ix_imports_list", "imports", ["workspace_id", "created_at", "id"], unique=False)
    op.create_index(
        "ix_imports_pending",
        "imports",
        ["lease_until"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    _parts("import_parts", "imports", "import_id")
    op.create_table(
        "import_errors",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("import_id", sa.UUID(), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("column", sa.Text(), nullable=True),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id", "import_id"],
            ["imports.workspace_id", "imports.id"],
            name=op.f("fk_import_errors_workspace_id_import_id_imports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "import_id", "row", "n", name=op.f("pk_import_errors")),
    )
    op.create_table(
        "exports",
        *_job_columns(),
        sa.Column("filter", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("fields", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("include_archived", sa.Boolean(), nullable=False),
        sa.Column("rows", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        _counter("parts"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_exports_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_exports")),
    )
    op.create_index("ix_exports_list", "exports", ["workspace_id", "created_at", "id"], unique=False)
    op.create_index(
        "ix_exports_pending",
        "exports",
        ["lease_until"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_index("ix_exports_expires", "exports", ["expires_at"], unique=False)
    _parts("export_parts", "exports", "export_id")


def downgrade() -> None:
    op.drop_table("export_parts")
    op.drop_index("ix_exports_expires", table_name="exports")
    op.drop_index(
        "ix_exports_pending",
        table_name="exports",
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.drop_index("ix_exports_list", table_name="exports")
    op.drop_table("exports")
    op.drop_table("import_errors")
    op.drop_table("import_parts")
    op.drop_index(
        "ix_imports_pending",
        table_name="imports",
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.drop_index("ix_imports_list", table_name="imports")
    op.drop_table("imports")
