"""custom fields: typed definitions per object type, and a trigger that keeps unique ones unique

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-25 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = {"contacts": "contact", "companies": "company", "deals": "deal", "tickets": "ticket"}

# Uniqueness of a custom field's value among a workspace's live records. A unique index per definition
# would mean DDL on every definition change, so an AFTER ROW trigger checks instead: it serialises writers
# of one (workspace, object type, key, value) on an advisory lock held to commit, then counts the live
# holders through the GIN index (containment). The application checks first for a friendly per-item
# error; this is what makes concurrent writers safe, whichever path they take.
UNIQUE_CHECK = """
CREATE FUNCTION custom_field_unique_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    key text;
    probe jsonb;
    holders bigint;
BEGIN
    IF NEW.archived_at IS NOT NULL OR NEW.custom_fields = '{}'::jsonb THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.archived_at IS NULL AND OLD.custom_fields = NEW.custom_fields THEN
        RETURN NULL;
    END IF;
    FOR key IN
        SELECT d.name FROM custom_fields AS d
        WHERE d.workspace_id = NEW.workspace_id AND d.object_type = TG_ARGV[0]
          AND d.is_unique AND d.archived_at IS NULL AND NEW.custom_fields ? d.name
          AND jsonb_typeof(NEW.custom_fields -> d.name) <> 'null'
        ORDER BY d.name
    LOOP
        probe := jsonb_build_object(key, NEW.custom_fields -> key);
        PERFORM pg_advisory_xact_lock(
            hashtextextended(NEW.workspace_id::text || '/' || TG_ARGV[0] || '/' || probe::text, 0));
        EXECUTE format(
            'SELECT count(*) FROM %I WHERE workspace_id = $1 AND archived_at IS NULL AND custom_fields @> $2',
            TG_TABLE_NAME) INTO holders USING NEW.workspace_id, probe;
        IF holders > 1 THEN
            RAISE EXCEPTION 'custom field % value is already in use', key
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'custom_fields.' || key;
        END IF;
    END LOOP;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "custom_fields",
        sa.Column("object_type", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("required", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("is_unique", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "options", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'"), nullable=False
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "external_ids",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("search_text", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("name ~ '^[a-z][a-z0-9_]{0,62}$'", name=op.f("ck_custom_fields_name")),
        sa.CheckConstraint(
            "object_type IN ('contact', 'company', 'deal', 'ticket')",
            name=op.f("ck_custom_fields_object_type"),
        ),
        sa.CheckConstraint(
            "type IN ('text', 'number', 'decimal', 'boolean', 'date', 'datetime', 'enum', 'multi_enum', "
            "'url', 'email')",
            name=op.f("ck_custom_fields_type"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_custom_fields_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_custom_fields")),
    )
    op.create_index(
        "ix_custom_fields_created", "custom_fields", ["workspace_id", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_custom_fields_updated", "custom_fields", ["workspace_id", "updated_at", "id"], unique=False
    )
    op.create_index(
        "ix_custom_fields_object_type", "custom_fields", ["workspace_id", "object_type", "name"], unique=False
    )
    op.create_index(
        "uq_custom_fields_name_live",
        "custom_fields",
        ["workspace_id", "object_type", "name"],
        unique=True,
        postgresql_where=sa.text("archived_at IS NULL"),
    )
    op.execute(UNIQUE_CHECK)
    for table, object_type in TABLES.items():
        op.execute(
            f"CREATE TRIGGER custom_field_unique AFTER INSERT OR UPDATE OF custom_fields, archived_at "
            f"ON {table} FOR EACH ROW EXECUTE FUNCTION custom_field_unique_check('{object_type}')"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS custom_field_unique ON {table}")
    op.execute("DROP FUNCTION IF EXISTS custom_field_unique_check()")
    op.drop_index(
        "uq_custom_fields_name_live",
        table_name="custom_fields",
        postgresql_where=sa.text("archived_at IS NULL"),
    )
    op.drop_index("ix_custom_fields_object_type", table_name="custom_fields")
    op.drop_index("ix_custom_fields_updated", table_name="custom_fields")
    op.drop_index("ix_custom_fields_created", table_name="custom_fields")
    op.drop_table("custom_fields")
