"""custom field index: a side table of typed custom field values, kept by triggers, for ranges and sorts

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = {"contacts": "contact", "companies": "company", "deals": "deal", "tickets": "ticket"}

# A stored value in its typed column, or all nulls when it does not fit (data written before the
# definition existed must never make a write or a backfill fail). Mirrors resources/custom_fields/typed.py.
TYPED = r"""
CREATE FUNCTION custom_field_typed(kind text, v jsonb, OUT num numeric, OUT txt text, OUT ts timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF v IS NULL THEN
        RETURN;
    ELSIF kind = 'number' THEN
        IF jsonb_typeof(v) = 'number' THEN
            num := (v #>> '{}')::numeric;
        END IF;
    ELSIF jsonb_typeof(v) <> 'string' THEN
        RETURN;
    ELSIF kind = 'decimal' THEN
        IF (v #>> '{}') ~ '^[+-]?(\d+(\.\d*)?|\.\d+)$' THEN
            num := (v #>> '{}')::numeric;
        END IF;
    ELSIF kind = 'datetime' THEN
        IF (v #>> '{}') ~ '^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?Z$'
        THEN
            -- the pattern still admits 2026-02-31; only then is a subtransaction paid for
            BEGIN
                ts := (v #>> '{}')::timestamptz;
            EXCEPTION WHEN others THEN
                ts := NULL;
            END;
        END IF;
    ELSIF kind IN ('text', 'date', 'enum', 'email', 'url') THEN
        -- a prefix keeps btree keys under their size limit; range filters recheck the full value
        txt := left(v #>> '{}', 500);
    END IF;
END $$
"""

# Per record write: leave at once when custom_fields did not change; otherwise one probe of the live
# definitions (none: no work), and per changed key one primary-key upsert or delete. Statements keyed by
# the primary key keep their index plan whatever the statistics say (a join form was planned as a scan
# of the whole side table on a young table). Archived records keep their values, so include_archived
# lists filter and sort too.
SYNC = """
CREATE FUNCTION custom_field_values_sync() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ws uuid;
    rid uuid;
    before jsonb := '{}';
    after jsonb := '{}';
    d record;
    t record;
BEGIN
    IF TG_OP = 'DELETE' THEN
        ws := OLD.workspace_id; rid := OLD.id; before := OLD.custom_fields;
    ELSE
        ws := NEW.workspace_id; rid := NEW.id; after := NEW.custom_fields;
        IF TG_OP = 'UPDATE' THEN
            before := OLD.custom_fields;
        END IF;
    END IF;
    IF before = after THEN
        RETURN NULL;
    END IF;
    FOR d IN
        SELECT f.name, f.type FROM custom_fields AS f
        WHERE f.workspace_id = ws AND f.object_type = TG_ARGV[0] AND f.archived_at IS NULL
          AND f.type NOT IN ('boolean', 'multi_enum')
    LOOP
        CONTINUE WHEN (before -> d.name) IS NOT DISTINCT FROM (after -> d.name);
        SELECT * INTO t FROM custom_field_typed(d.type, after -> d.name);
        IF t.num IS NOT NULL OR t.txt IS NOT NULL OR t.ts IS NOT NULL THEN
            INSERT INTO custom_field_values (workspace_id, object_type, field, object_id, num, txt, ts)
            VALUES (ws, TG_ARGV[0], d.name, rid, t.num, t.txt, t.ts)
            ON CONFLICT (workspace_id, object_type, field, object_id)
            DO UPDATE SET num = EXCLUDED.num, txt = EXCLUDED.txt, ts = EXCLUDED.ts;
        ELSIF TG_OP <> 'INSERT' THEN
            DELETE FROM custom_field_values
            WHERE workspace_id = ws AND object_type = TG_ARGV[0] AND field = d.name AND object_id = rid;
        END IF;
    END LOOP;
    RETURN NULL;
END $$
"""

# A definition that goes live (created or restored) is backfilled from its records in one statement, in
# the definition's own transaction; one that is archived takes its values out of the index.
DEFINE = """
CREATE FUNCTION custom_field_values_define() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (OLD.archived_at IS NULL) = (NEW.archived_at IS NULL) THEN
        RETURN NULL;
    END IF;
    DELETE FROM custom_field_values
    WHERE workspace_id = NEW.workspace_id AND object_type = NEW.object_type AND field = NEW.name;
    IF NEW.archived_at IS NULL THEN
        EXECUTE format(
            'INSERT INTO custom_field_values (workspace_id, object_type, field, object_id, num, txt, ts) '
            'SELECT r.workspace_id, $2, $3, r.id, t.num, t.txt, t.ts '
            'FROM %I AS r, custom_field_typed($4, r.custom_fields -> $3) AS t '
            'WHERE r.workspace_id = $1 AND r.custom_fields ? $3 '
            'AND (t.num IS NOT NULL OR t.txt IS NOT NULL OR t.ts IS NOT NULL)',
            CASE NEW.object_type WHEN 'contact' THEN 'contacts' WHEN 'company' THEN 'companies'
                 WHEN 'deal' THEN 'deals' ELSE 'tickets' END)
        USING NEW.workspace_id, NEW.object_type, NEW.name, NEW.type;
    END IF;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "custom_field_values",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("object_type", sa.Text(), nullable=False),
        sa.Column("field", sa.Text(), nullable=False),
        sa.Column("object_id", sa.UUID(), nullable=False),
        sa.Column("num", sa.Numeric(), nullable=True),
        sa.Column("txt", sa.Text(collation="C"), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "object_type IN ('contact', 'company', 'deal', 'ticket')",
            name=op.f("ck_custom_field_values_object_type"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_custom_field_values_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "workspace_id", "object_type", "field", "object_id", name=op.f("pk_custom_field_values")
        ),
    )
    for column in ("num", "txt", "ts"):
        op.create_index(
            f"ix_custom_field_values_{column}",
            "custom_field_values",
            ["workspace_id", "object_type", "field", column, "object_id"],
            unique=False,
        )
    op.execute(TYPED)
    op.execute(SYNC)
    op.execute(DEFINE)
    for table, object_type in TABLES.items():
        op.execute(
            f"CREATE TRIGGER custom_field_values_sync AFTER INSERT OR DELETE OR UPDATE OF custom_fields "
            f"ON {table} FOR EACH ROW EXECUTE FUNCTION custom_field_values_sync('{object_type}')"
        )
    op.execute(
        "CREATE TRIGGER custom_field_values_define AFTER INSERT OR UPDATE OF archived_at ON custom_fields "
        "FOR EACH ROW EXECUTE FUNCTION custom_field_values_define()"
    )
    # values under definitions that exist already
    for table, object_type in TABLES.items():
        op.execute(
            "INSERT INTO custom_field_values (workspace_id, object_type, field, object_id, num, txt, ts) "
            "SELECT d.workspace_id, d.object_type, d.name, r.id, t.num, t.txt, t.ts "
            f"FROM custom_fields AS d JOIN {table} AS r "
            "ON r.workspace_id = d.workspace_id AND r.custom_fields ? d.name, "
            "custom_field_typed(d.type, r.custom_fields -> d.name) AS t "
            f"WHERE d.object_type = '{object_type}' AND d.archived_at IS NULL "
            "AND (t.num IS NOT NULL OR t.txt IS NOT NULL OR t.ts IS NOT NULL)"
        )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS custom_field_values_define ON custom_fields")
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS custom_field_values_sync ON {table}")
    op.execute("DROP FUNCTION IF EXISTS custom_field_values_define()")
    op.execute("DROP FUNCTION IF EXISTS custom_field_values_sync()")
    op.execute("DROP FUNCTION IF EXISTS custom_field_typed(text, jsonb)")
    for column in ("ts", "txt", "num"):
        op.drop_index(f"ix_custom_field_values_{column}", table_name="custom_field_values")
    op.drop_table("custom_field_values")
