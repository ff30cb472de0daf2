"""Events: a NOTIFY at commit naming the streamed workspaces a statement wrote events for (the live stream's
wake-up), and the table of streamed workspaces

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_stream_workspaces",
        sa.Column("workspace_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("hub_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_event_stream_workspaces_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "hub_id", name=op.f("pk_event_stream_workspaces")),
        prefixes=["UNLOGGED"],
    )
    # Once per statement, delivered at commit: each API process's one LISTEN connection wakes only the
    # streams of these workspaces (GET /v1/events/stream). Only workspaces some live hub streams (its row
    # refreshed within 5 minutes): a NOTIFY makes its commit queue on a server-wide lock, which writes
    # nobody streams must not pay. A payload holds at most 8000 bytes: past that (a statement across some
    # 200 streamed workspaces, which only the SLA breach job writes) the payload is empty, which wakes every
    # stream.
    op.execute(
        """
        CREATE FUNCTION crm_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            workspaces text;
        BEGIN
            SELECT string_agg(DISTINCT n.workspace_id::text, ',') INTO workspaces
            FROM new_rows n
            WHERE EXISTS (
                SELECT 1 FROM event_stream_workspaces s
                WHERE s.workspace_id = n.workspace_id AND s.seen_at > now() - interval '5 minutes'
            );
            IF workspaces IS NOT NULL THEN
                PERFORM pg_notify(
                    'crm_events', CASE WHEN length(workspaces) <= 7900 THEN workspaces ELSE '' END
                );
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER events_notify AFTER INSERT ON events "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION crm_notify_events()"
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS crm_notify_events() CASCADE")
    op.drop_table("event_stream_workspaces")
