"""Reports: indexes, the contacts' lifecycle history, and contacts' acquisition source.

Indexes for the reports: deals by pipeline and stage, open deals by expected close date, closed deals by
closed_at, paid orders, tickets by created_at, each covering what its report reads; the stage history's
per-deal index carries the pipeline and stage. And the contacts' lifecycle history
(``contact_lifecycle_changes``), written by a trigger on events as the deals' stage history is, and
backfilled from the events still held. Contacts gain ``source`` and ``source_detail`` (attribution).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("contacts", sa.Column("source", sa.Text(), nullable=True))
    op.add_column("contacts", sa.Column("source_detail", sa.Text(), nullable=True))
    op.create_index("ix_contacts_source", "contacts", ["workspace_id", "source", "created_at", "id"])
    op.create_index("ix_contacts_source_detail", "contacts", ["workspace_id", "source_detail"])
    op.create_index(
        "ix_contacts_archived",
        "contacts",
        ["workspace_id", "id"],
        postgresql_where=sa.text("archived_at IS NOT NULL"),
    )
    op.create_table(
        "contact_lifecycle_changes",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column("from_stage", sa.Text(), nullable=True),
        sa.Column("to_stage", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id", "contact_id"],
            ["contacts.workspace_id", "contacts.id"],
            name=op.f("fk_contact_lifecycle_changes_workspace_id_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_contact_lifecycle_changes")),
    )
    op.create_index(
        "ix_contact_lifecycle_changes_contact",
        "contact_lifecycle_changes",
        ["workspace_id", "contact_id", "changed_at", "id"],
        postgresql_include=["to_stage"],
    )
    op.create_index(
        "ix_contact_lifecycle_changes_stage",
        "contact_lifecycle_changes",
        ["workspace_id", "to_stage", "changed_at"],
        postgresql_include=["contact_id"],
    )
    op.execute(_LIFECYCLE_FUNCTION)
    op.execute(
        "CREATE TRIGGER events_contact_lifecycle_history AFTER INSERT ON events FOR EACH ROW "
        "WHEN (NEW.type IN ('contact.created', 'contact.updated')) "
        "EXECUTE FUNCTION record_contact_lifecycle_change()"
    )
    # what the event log still holds (it keeps CRM_EVENT_RETENTION_DAYS): older changes are gone for good
    op.execute(_LIFECYCLE_BACKFILL)
    op.create_index(
        "ix_deals_archived",
        "deals",
        ["workspace_id", "id"],
        postgresql_where=sa.text("archived_at IS NOT NULL"),
    )
    op.create_index(
        "ix_deals_report_pipeline",
        "deals",
        ["workspace_id", "pipeline_id", "stage_id"],
        postgresql_include=["currency", "amount", "owner_id", "archived_at", "created_at"],
    )
    op.create_index(
        "ix_deals_report_open",
        "deals",
        ["workspace_id", "expected_close_date"],
        postgresql_include=["pipeline_id", "stage_id", "owner_id", "currency", "amount", "archived_at"],
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index(
        "ix_deals_report_closed",
        "deals",
        ["workspace_id", "closed_at"],
        postgresql_include=[
            "status",
            "pipeline_id",
            "owner_id",
            "source",
            "currency",
            "amount",
            "lost_reason",
            "archived_at",
            "created_at",
            "contact_id",
        ],
        postgresql_where=sa.text("closed_at IS NOT NULL"),
    )
    op.create_index(
        "ix_orders_report_paid",
        "orders",
        ["workspace_id", "placed_at"],
        postgresql_include=["contact_id", "created_at", "currency", "total"],
        postgresql_where=sa.text("status IN ('paid', 'fulfilled')"),
    )
    op.drop_index("ix_deal_stage_changes_deal", table_name="deal_stage_changes")
    op.create_index(
        "ix_deal_stage_changes_deal",
        "deal_stage_changes",
        ["workspace_id", "deal_id", "changed_at", "id"],
        postgresql_include=["pipeline_id", "to_stage_id"],
    )
    op.create_index(
        "ix_deal_stage_changes_changed",
        "deal_stage_changes",
        ["workspace_id", "changed_at"],
        postgresql_include=["deal_id", "id", "from_stage_id"],
    )
    op.create_index(
        "ix_tickets_report_created",
        "tickets",
        ["workspace_id", "created_at"],
        postgresql_include=[
            "priority",
            "assignee_id",
            "channel",
            "first_responded_at",
            "solved_at",
            "first_response_due_at",
            "resolution_due_at",
            "first_response_breached_at",
            "resolution_breached_at",
            "archived_at",
        ],
    )


# A create that set a stage, or an update whose ``previous`` names the stage (it changed): the same test the
# field history applies. The stage left is the update's previous value.
_LIFECYCLE_FUNCTION = """
CREATE FUNCTION record_contact_lifecycle_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.type = 'contact.created' AND NEW.data -> 'object' ->> 'lifecycle_stage' IS NOT NULL)
       OR (NEW.type = 'contact.updated' AND NEW.data -> 'previous' ? 'lifecycle_stage') THEN
        INSERT INTO contact_lifecycle_changes
            (workspace_id, id, contact_id, from_stage, to_stage, changed_at, actor)
        VALUES (
            NEW.workspace_id, NEW.id, NEW.object_id,
            CASE WHEN NEW.type = 'contact.updated' THEN NEW.data -> 'previous' ->> 'lifecycle_stage' END,
            NEW.data -> 'object' ->> 'lifecycle_stage',
            NEW.created_at, NEW.actor);
    END IF;
    RETURN NULL;
END
$$
"""

_LIFECYCLE_BACKFILL = """
INSERT INTO contact_lifecycle_changes (workspace_id, id, contact_id, from_stage, to_stage, changed_at, actor)
SELECT e.workspace_id, e.id, e.object_id,
       CASE WHEN e.type = 'contact.updated' THEN e.data -> 'previous' ->> 'lifecycle_stage' END,
       e.data -> 'object' ->> 'lifecycle_stage', e.created_at, e.actor
FROM events e
JOIN contacts c ON c.workspace_id = e.workspace_id AND c.id = e.object_id
WHERE (e.type = 'contact.created' AND e.data -> 'object' ->> 'lifecycle_stage' IS NOT NULL)
   OR (e.type = 'contact.updated' AND e.data -> 'previous' ? 'lifecycle_stage')
"""


def downgrade() -> None:
    op.drop_index("ix_deal_stage_changes_changed", table_name="deal_stage_changes")
    op.execute("DROP TRIGGER events_contact_lifecycle_history ON events")
    op.execute("DROP FUNCTION record_contact_lifecycle_change()")
    op.drop_table("contact_lifecycle_changes")
    op.drop_index("ix_contacts_archived", table_name="contacts")
    op.drop_index("ix_contacts_source_detail", table_name="contacts")
    op.drop_index("ix_contacts_source", table_name="contacts")
    op.drop_column("contacts", "source_detail")
    op.drop_column("contacts", "source")
    op.drop_index("ix_orders_report_paid", table_name="orders")
    op.drop_index("ix_tickets_report_created", table_name="tickets")
    op.drop_index("ix_deal_stage_changes_deal", table_name="deal_stage_changes")
    op.create_index(
        "ix_deal_stage_changes_deal", "deal_stage_changes", ["workspace_id", "deal_id", "changed_at", "id"]
    )
    op.drop_index("ix_deals_report_closed", table_name="deals")
    op.drop_index("ix_deals_report_open", table_name="deals")
    op.drop_index("ix_deals_report_pipeline", table_name="deals")
    op.drop_index("ix_deals_archived", table_name="deals")
