"""Cheaper contact writes (issue 11): two indexes fewer on contacts, and the custom field triggers fire only
when there is something for them to do.

- ``ix_contacts_email`` goes: no list sorts by email, an email filter is an equality that
  ``ix_contacts_email_prefix`` answers (``text_pattern_ops`` has the same ``=``), and the natural-key lookups
  of live contacts use ``uq_contacts_email_live``.
- ``ix_contacts_report_created`` (``(workspace_id, created_at) INCLUDE (id, source, lifecycle_stage,
  archived_at)``) and ``ix_contacts_created`` (``(workspace_id, created_at, id)``) become one:
  ``ix_contacts_created`` on ``(workspace_id, created_at, id) INCLUDE (source, lifecycle_stage,
  archived_at)`` serves the default sort and attribution's index-only range alike.
- ``custom_field_unique`` and ``custom_field_values_sync`` were row triggers on every insert, and on every
  update (the write statement sets every column, so ``UPDATE OF custom_fields`` always matched); their
  functions then left at once when the custom fields were empty or unchanged, after PostgreSQL had queued
  the event and called PL/pgSQL for it. Each becomes one trigger per operation with a ``WHEN`` condition
  equal to the function's own early exit, so PostgreSQL skips the call: same effect, no work for writes
  that do not touch custom fields.

Revision ID: 0039
Revises: 0036
Create Date: 2026-12-01 03:15:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0039"
down_revision: str | None = "0036"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = {"contacts": "contact", "companies": "company", "deals": "deal", "tickets": "ticket"}

# (name, event, WHEN, function): each WHEN is the function's early exit, negated
_EMPTY = "'{}'::jsonb"
TRIGGERS = (
    (
        "custom_field_unique_insert",
        "INSERT",
        f"NEW.archived_at IS NULL AND NEW.custom_fields <> {_EMPTY}",
        "custom_field_unique_check",
    ),
    (
        "custom_field_unique_update",
        "UPDATE OF custom_fields, archived_at",
        f"NEW.archived_at IS NULL AND NEW.custom_fields <> {_EMPTY}"
        " AND (OLD.archived_at IS NOT NULL OR OLD.custom_fields <> NEW.custom_fields)",
        "custom_field_unique_check",
    ),
    (
        "custom_field_values_sync_insert",
        "INSERT",
        f"NEW.custom_fields <> {_EMPTY}",
        "custom_field_values_sync",
    ),
    (
        "custom_field_values_sync_update",
        "UPDATE OF custom_fields",
        "OLD.custom_fields <> NEW.custom_fields",
        "custom_field_values_sync",
    ),
    (
        "custom_field_values_sync_delete",
        "DELETE",
        f"OLD.custom_fields <> {_EMPTY}",
        "custom_field_values_sync",
    ),
)


def upgrade() -> None:
    op.drop_index("ix_contacts_email", table_name="contacts")
    op.drop_index("ix_contacts_report_created", table_name="contacts")
    op.drop_index("ix_contacts_created", table_name="contacts")
    op.create_index(
        "ix_contacts_created",
        "contacts",
        ["workspace_id", "created_at", "id"],
        postgresql_include=["source", "lifecycle_stage", "archived_at"],
    )
    for table, obj in TABLES.items():
        op.execute(f"DROP TRIGGER custom_field_unique ON {table}")
        op.execute(f"DROP TRIGGER custom_field_values_sync ON {table}")
        for name, event, when, function in TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW "
                f"WHEN ({when}) EXECUTE FUNCTION {function}('{obj}')"
            )


def downgrade() -> None:
    for table, obj in TABLES.items():
        for name, *_ in TRIGGERS:
            op.execute(f"DROP TRIGGER {name} ON {table}")
        op.execute(
            f"CREATE TRIGGER custom_field_unique AFTER INSERT OR UPDATE OF custom_fields, archived_at "
            f"ON {table} FOR EACH ROW EXECUTE FUNCTION custom_field_unique_check('{obj}')"
        )
        op.execute(
            f"CREATE TRIGGER custom_field_values_sync AFTER INSERT OR DELETE OR UPDATE OF custom_fields "
            f"ON {table} FOR EACH ROW EXECUTE FUNCTION custom_field_values_sync('{obj}')"
        )
    op.drop_index("ix_contacts_created", table_name="contacts")
    op.create_index("ix_contacts_created", "contacts", ["workspace_id", "created_at", "id"])
    op.create_index(
        "ix_contacts_report_created",
        "contacts",
        ["workspace_id", "created_at"],
        postgresql_include=["id", "source", "lifecycle_stage", "archived_at"],
    )
    op.create_index("ix_contacts_email", "contacts", ["workspace_id", "email", "id"])
