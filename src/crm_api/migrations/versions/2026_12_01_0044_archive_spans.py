"""When contacts and deals were archived before a restore (issue 15): ``archive_spans``.

A restore clears ``archived_at``, so a record archived before a past ``as_of`` and restored since looked
live at ``as_of`` to the pipeline's and the customers' ``as_of``. Each restore now keeps the span it ends:
``archive_spans_keep``, an AFTER UPDATE row trigger on ``contacts`` and ``deals`` whose WHEN clause passes
only when ``archived_at`` goes from set to null (every other write pays the check alone). Backfilled from the
``contact.restored`` and ``deal.restored`` events the log still holds (their ``previous.archived_at``).

Revision ID: 0044
Revises: 0043
Create Date: 2026-12-01 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0044"
down_revision: str | None = "0043"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = {"contacts": "contact", "deals": "deal"}


def upgrade() -> None:
    op.create_table(
        "archive_spans",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("object_id", sa.UUID(), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("object_type", sa.Text(), nullable=False),
        sa.Column("restored_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_archive_spans_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "object_id", "archived_at", name=op.f("pk_archive_spans")),
    )
    op.create_index(
        "ix_archive_spans_restored",
        "archive_spans",
        ["workspace_id", "object_type", "restored_at"],
        postgresql_include=["archived_at", "object_id"],
    )
    # restored when the write says (its updated_at, the application's clock, as archived_at and the events'
    # times are); a second restore of one archival in a transaction keeps the first
    op.execute(
        """
        CREATE FUNCTION archive_spans_keep() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO archive_spans (workspace_id, object_id, archived_at, object_type, restored_at)
            VALUES (NEW.workspace_id, NEW.id, OLD.archived_at, TG_ARGV[0], coalesce(NEW.updated_at, now()))
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END $$
        """
    )
    for table, kind in TABLES.items():
        op.execute(
            f"CREATE TRIGGER {table}_archive_spans AFTER UPDATE OF archived_at ON {table} FOR EACH ROW "
            "WHEN (OLD.archived_at IS NOT NULL AND NEW.archived_at IS NULL) "
            f"EXECUTE FUNCTION archive_spans_keep('{kind}')"
        )
    # what the log still holds: each restore event names the archival it ended
    op.execute(
        """
        INSERT INTO archive_spans (workspace_id, object_id, archived_at, object_type, restored_at)
        SELECT e.workspace_id, e.object_id, (e.data -> 'previous' ->> 'archived_at')::timestamptz,
               e.object_type, e.created_at
        FROM events AS e
        WHERE e.type IN ('contact.restored', 'deal.restored')
          AND e.data -> 'previous' ->> 'archived_at' IS NOT NULL
        ON CONFLICT DO NOTHING
        """
    )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER {table}_archive_spans ON {table}")
    op.execute("DROP FUNCTION archive_spans_keep()")
    op.drop_index("ix_archive_spans_restored", table_name="archive_spans")
    op.drop_table("archive_spans")
