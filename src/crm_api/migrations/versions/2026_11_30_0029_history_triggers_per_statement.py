"""The deal stage and contact lifecycle histories written once per statement (transition table), not per row

Revision ID: 0029
Revises: 0026
Create Date: 2026-11-30 19:00:00.000000

A per-row trigger ran a PL/pgSQL call and a one-row INSERT (with its foreign key check) for every event: in
an import's chunk of 500 contacts that was a third of the write statement's time. The same rows now come
from one INSERT ... SELECT over the statement's new events. Names stay (functions and triggers).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0029"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_DEALS = """
CREATE OR REPLACE FUNCTION record_deal_stage_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deal_stage_changes
        (workspace_id, id, deal_id, pipeline_id, from_stage_id, to_stage_id, changed_at, actor)
    SELECT n.workspace_id, n.id, n.object_id,
           (n.data -> 'object' ->> 'pipeline_id')::uuid,
           CASE WHEN n.type = 'deal.stage_changed' THEN (n.data -> 'previous' ->> 'stage_id')::uuid END,
           (n.data -> 'object' ->> 'stage_id')::uuid,
           n.created_at, n.actor
    FROM new_rows n
    WHERE n.type IN ('deal.created', 'deal.stage_changed');
    RETURN NULL;
END
$$
"""

_CONTACTS = """
CREATE OR REPLACE FUNCTION record_contact_lifecycle_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_lifecycle_changes
        (workspace_id, id, contact_id, from_stage, to_stage, changed_at, actor)
    SELECT n.workspace_id, n.id, n.object_id,
           CASE WHEN n.type = 'contact.updated' THEN n.data -> 'previous' ->> 'lifecycle_stage' END,
           n.data -> 'object' ->> 'lifecycle_stage',
           n.created_at, n.actor
    FROM new_rows n
    WHERE (n.type = 'contact.created' AND n.data -> 'object' ->> 'lifecycle_stage' IS NOT NULL)
       OR (n.type = 'contact.updated' AND n.data -> 'previous' ? 'lifecycle_stage');
    RETURN NULL;
END
$$
"""

_DEALS_PER_ROW = """
CREATE OR REPLACE FUNCTION record_deal_stage_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deal_stage_changes
        (workspace_id, id, deal_id, pipeline_id, from_stage_id, to_stage_id, changed_at, actor)
    VALUES (
        NEW.workspace_id, NEW.id, NEW.object_id,
        (NEW.data -> 'object' ->> 'pipeline_id')::uuid,
        CASE WHEN NEW.type = 'deal.stage_changed' THEN (NEW.data -> 'previous' ->> 'stage_id')::uuid END,
        (NEW.data -> 'object' ->> 'stage_id')::uuid,
        NEW.created_at, NEW.actor);
    RETURN NULL;
END
$$
"""

_CONTACTS_PER_ROW = """
CREATE OR REPLACE FUNCTION record_contact_lifecycle_change() RETURNS trigger LANGUAGE plpgsql AS $$
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


def upgrade() -> None:
    op.execute("DROP TRIGGER events_deal_stage_history ON events")
    op.execute("DROP TRIGGER events_contact_lifecycle_history ON events")
    op.execute(_DEALS)
    op.execute(_CONTACTS)
    op.execute(
        "CREATE TRIGGER events_deal_stage_history AFTER INSERT ON events "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION record_deal_stage_change()"
    )
    op.execute(
        "CREATE TRIGGER events_contact_lifecycle_history AFTER INSERT ON events "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION record_contact_lifecycle_change()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER events_deal_stage_history ON events")
    op.execute("DROP TRIGGER events_contact_lifecycle_history ON events")
    op.execute(_DEALS_PER_ROW)
    op.execute(_CONTACTS_PER_ROW)
    op.execute(
        "CREATE TRIGGER events_deal_stage_history AFTER INSERT ON events FOR EACH ROW "
        "WHEN (NEW.type IN ('deal.created', 'deal.stage_changed')) "
        "EXECUTE FUNCTION record_deal_stage_change()"
    )
    op.execute(
        "CREATE TRIGGER events_contact_lifecycle_history AFTER INSERT ON events FOR EACH ROW "
        "WHEN (NEW.type IN ('contact.created', 'contact.updated')) "
        "EXECUTE FUNCTION record_contact_lifecycle_change()"
    )
