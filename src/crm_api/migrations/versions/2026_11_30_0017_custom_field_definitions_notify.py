"""custom_fields: NOTIFY crm_custom_fields (payload: the workspace id) when definitions change

Each API process keeps the definitions its writes are judged by in memory, and drops a workspace's when this
notification arrives (resources/custom_fields/cache.py). PostgreSQL delivers it at commit, once per distinct
payload per transaction.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 12:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION crm_notify_custom_fields() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('crm_custom_fields', COALESCE(NEW.workspace_id, OLD.workspace_id)::text);
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER custom_fields_notify AFTER INSERT OR UPDATE OR DELETE ON custom_fields "
        "FOR EACH ROW EXECUTE FUNCTION crm_notify_custom_fields()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER custom_fields_notify ON custom_fields")
    op.execute("DROP FUNCTION crm_notify_custom_fields()")
