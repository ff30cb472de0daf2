"""Events: a NOTIFY at commit naming the workspaces a statement wrote events for (the live stream's wake-up)

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 11:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Once per statement, delivered at commit: each API process's one LISTEN connection wakes only the
    # streams of these workspaces (GET /v1/events/stream). A payload holds at most 8000 bytes: past that
    # (a statement across some 200 workspaces, which only the SLA breach job writes) the payload is empty,
    # which wakes every stream.
    op.execute(
        """
        CREATE FUNCTION crm_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            workspaces text;
        BEGIN
            SELECT string_agg(DISTINCT workspace_id::text, ',') INTO workspaces FROM new_rows;
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
