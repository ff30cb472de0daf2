"""The roll-ups' writers append to unindexed pending tables; one trigger for a history insert

Revision ID: 0041
Revises: 0040
Create Date: 2026-12-01 06:10:00.000000

A contact created in lead paid, for migration 0036's roll-ups, three rows and eight index entries: its
``contact_attribution`` row (two), an ``attribution_deltas`` row and a ``lead_deltas`` row (three each: the
key, the hour, the partial "not folded" index). Now:

- the writers (every trigger function that appended to ``attribution_deltas``/``lead_deltas``) append to
  ``attribution_pending``/``lead_pending``: no key, no index, one heap tuple. The fold empties them into the
  delta tables (which now hold only its sums: no ``folded`` column, no partial index); the reports sum both.
- a new contact's trigger writes its count row without the per-currency expansion (a contact inserted has no
  won deal yet), and returns at once when the insert had no row (a PATCH's statement fires it so);
- an insert into the lifecycle history runs one statement trigger (the attribution refresh, the lead count,
  the lead settle, in that order, as the three triggers it replaces ran), not three;
- a contact's update that changes only its lifecycle stage refreshes its attribution only when that can
  change ``ever_lead`` (the one fact the stage enters): not between two stages other than lead, not into
  lead for a contact known as a lead, not out of lead for one with an entry into lead in its history.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0041"
down_revision: str | None = "0040"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the functions that append deltas (0036): re-created with the pending table as their target
_WRITERS = (
    "refresh_contact_attribution(uuid, uuid[])",
    "attribution_contacts_insert()",
    "lead_deltas_insert()",
    "lead_deltas_delete()",
    "lead_deltas_update()",
)

_RETARGET = """
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[{functions}] LOOP
        EXECUTE replace(replace(pg_get_functiondef(f::regprocedure),
            'INSERT INTO attribution_{a}', 'INSERT INTO attribution_{b}'),
            'INSERT INTO lead_{a}', 'INSERT INTO lead_{b}');
    END LOOP;
END
$$
"""

# Every row of a delta table folded into one per group (before the ``folded`` column goes: rows appended
# before this migration are sums already, so the answers do not change; this only compacts them).
_COMPACT = """
WITH gone AS (DELETE FROM {table} RETURNING workspace_id, hour, source, archived, {columns})
INSERT INTO {table} (workspace_id, hour, source, archived, {columns}, folded)
SELECT workspace_id, hour, source, archived, {sums}, true FROM gone
GROUP BY workspace_id, hour, source, archived{group}
HAVING {nonzero}
"""

_ATTRIBUTION = {
    "table": "attribution_deltas",
    "columns": "currency, contacts, leads, customers, amount",
    "sums": "currency, sum(contacts), sum(leads), sum(customers), sum(amount)",
    "group": ", currency",
    "nonzero": "sum(contacts) <> 0 OR sum(leads) <> 0 OR sum(customers) <> 0 OR coalesce(sum(amount), 0) <> 0",
}
_LEADS = {
    "table": "lead_deltas",
    "columns": "leads",
    "sums": "sum(leads)",
    "group": "",
    "nonzero": "sum(leads) <> 0",
}

# A new contact's facts from its row (as 0036's), and its count row straight: no won deal yet, so no
# currency rows and no expansion; a row already there (a deal or history row of the same statement ran its
# refresh first) is left alone, and so are its counts.
_CONTACTS_INSERT = """
CREATE OR REPLACE FUNCTION attribution_contacts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- the API's write statement has an INSERT and an UPDATE of contacts: a PATCH fires this with no row
    IF NOT EXISTS (SELECT 1 FROM new_rows) THEN
        RETURN NULL;
    END IF;
    WITH put AS (
        INSERT INTO contact_attribution
            (workspace_id, contact_id, created_at, source, archived, ever_lead, buyer, won)
        SELECT n.workspace_id, n.id, n.created_at, n.source, n.archived_at IS NOT NULL,
               coalesce(n.lifecycle_stage = 'lead', false), false, NULL
        FROM new_rows AS n
        ON CONFLICT (workspace_id, contact_id) DO NOTHING
        RETURNING workspace_id, created_at, source, archived, ever_lead
    )
    INSERT INTO attribution_pending
        (workspace_id, hour, source, archived, currency, contacts, leads, customers, amount)
    SELECT p.workspace_id, date_trunc('hour', p.created_at, 'UTC'), p.source, p.archived, NULL, count(*),
           count(*) FILTER (WHERE p.ever_lead), 0, NULL
    FROM put AS p
    GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END
$$
"""

# The three statement triggers of a history insert in one function, in the order they ran (by name):
# attribution_insert, lead_deltas_insert, lead_entries_insert. Each part is 0036's statement unchanged.
_HISTORY_INSERT = """
CREATE FUNCTION history_rollups_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- attribution: a contact's first entry into lead (another changes nothing for a known lead)
    PERFORM refresh_contact_attribution(t.workspace_id, t.ids)
    FROM (SELECT r.workspace_id, array_agg(DISTINCT r.contact_id) AS ids FROM new_rows AS r
          WHERE r.contact_id IS NOT NULL AND r.to_stage = 'lead' AND NOT EXISTS (
              SELECT 1 FROM contact_attribution AS a
              WHERE a.workspace_id = r.workspace_id AND a.contact_id = r.contact_id AND a.ever_lead)
          GROUP BY r.workspace_id) AS t;
    -- lead conversion: the count of first entries into lead
    INSERT INTO lead_pending (workspace_id, hour, source, archived, leads)
    SELECT r.workspace_id, date_trunc('hour', r.changed_at, 'UTC'), r.source, r.archived, count(*)
    FROM new_rows AS r
    WHERE r.to_stage = 'lead' AND r.prior_lead_at IS NULL
    GROUP BY 1, 2, 3, 4;
    -- lead conversion: settle the entries, unless the new one is its contact's only one and already right
    PERFORM settle_lead_entries(t.workspace_id, t.ids)
    FROM (SELECT r.workspace_id, array_agg(DISTINCT r.contact_id) AS ids FROM new_rows AS r
          WHERE r.to_stage IN ('lead', 'customer')
            AND (EXISTS (SELECT 1 FROM contact_lifecycle_changes AS b
                         WHERE b.workspace_id = r.workspace_id AND b.contact_id = r.contact_id
                           AND b.id <> r.id AND b.to_stage IN ('lead', 'customer'))
                 OR (r.to_stage = 'lead' AND (r.prior_lead_at IS NOT NULL OR r.converted_at IS NOT NULL
                     OR NOT EXISTS (SELECT 1 FROM contacts AS c
                                    WHERE c.workspace_id = r.workspace_id AND c.id = r.contact_id
                                      AND c.source IS NOT DISTINCT FROM r.source
                                      AND (c.archived_at IS NOT NULL) = r.archived))))
          GROUP BY r.workspace_id) AS t;
    RETURN NULL;
END
$$
"""

# The contact's row trigger (0036 ran the refresh for any change of created_at, source, archived_at or the
# stage). Skipping is exact: with the other three unchanged, only ``ever_lead`` (the stage is lead, or the
# history has an entry into lead) can move, and in each case skipped it is true before and after, or the
# stage plays no part in it (neither stage is lead; the history's own trigger refreshes on its inserts).
_CONTACTS_UPDATE = """
CREATE OR REPLACE FUNCTION attribution_contacts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.created_at, OLD.source, OLD.archived_at) IS NOT DISTINCT FROM (NEW.created_at, NEW.source,
                                                                         NEW.archived_at)
       AND (NOT coalesce(OLD.lifecycle_stage = 'lead' OR NEW.lifecycle_stage = 'lead', false)
            OR (NEW.lifecycle_stage = 'lead' AND EXISTS (
                    SELECT 1 FROM contact_attribution AS a
                    WHERE a.workspace_id = NEW.workspace_id AND a.contact_id = NEW.id AND a.ever_lead))
            OR (OLD.lifecycle_stage = 'lead' AND EXISTS (
                    SELECT 1 FROM contact_lifecycle_changes AS h
                    WHERE h.workspace_id = NEW.workspace_id AND h.contact_id = NEW.id AND h.to_stage = 'lead')))
    THEN
        RETURN NULL;
    END IF;
    PERFORM refresh_contact_attribution(NEW.workspace_id, ARRAY[OLD.id, NEW.id]);
    RETURN NULL;
END
$$
"""

_CONTACTS_UPDATE_BEFORE = """
CREATE OR REPLACE FUNCTION attribution_contacts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM refresh_contact_attribution(NEW.workspace_id, ARRAY[
        CASE WHEN true THEN OLD.id END, CASE WHEN true THEN NEW.id END]);
    RETURN NULL;
END
$$
"""

_HISTORY_TRIGGERS = (
    ("attribution_insert", "attribution_contact_lifecycle_changes_insert"),
    ("lead_deltas_insert", "lead_deltas_insert"),
    ("lead_entries_insert", "lead_entries_contact_lifecycle_changes_insert"),
)

_PENDING_STORAGE = "autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0"


def upgrade() -> None:
    op.create_table(
        "attribution_pending",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("contacts", sa.BigInteger(), nullable=False),
        sa.Column("leads", sa.BigInteger(), nullable=False),
        sa.Column("customers", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(20, 2), nullable=True),
    )
    op.create_table(
        "lead_pending",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("leads", sa.BigInteger(), nullable=False),
    )
    # emptied every fold: vacuumed after a thousand dead rows, whatever the table's size
    op.execute(f"ALTER TABLE attribution_pending SET ({_PENDING_STORAGE})")
    op.execute(f"ALTER TABLE lead_pending SET ({_PENDING_STORAGE})")
    # the writers wait here for the migration; what they appended so far is folded in below
    op.execute("LOCK TABLE attribution_deltas, lead_deltas IN EXCLUSIVE MODE")
    functions = ", ".join(f"'{f}'" for f in _WRITERS)
    op.execute(_RETARGET.format(functions=functions, a="deltas", b="pending"))
    op.execute(_CONTACTS_INSERT)
    op.execute(_CONTACTS_UPDATE)
    for params in (_ATTRIBUTION, _LEADS):
        op.execute(_COMPACT.format(**params))
    op.drop_index("ix_attribution_deltas_unfolded", table_name="attribution_deltas")
    op.drop_index("ix_lead_deltas_unfolded", table_name="lead_deltas")
    op.drop_column("attribution_deltas", "folded")
    op.drop_column("lead_deltas", "folded")
    for trigger, _ in _HISTORY_TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger} ON contact_lifecycle_changes")
    op.execute(_HISTORY_INSERT)
    op.execute(
        "CREATE TRIGGER rollups_insert AFTER INSERT ON contact_lifecycle_changes "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION history_rollups_insert()"
    )


def downgrade() -> None:
    op.execute(_CONTACTS_UPDATE_BEFORE)
    op.execute("DROP TRIGGER rollups_insert ON contact_lifecycle_changes")
    op.execute("DROP FUNCTION history_rollups_insert()")
    for trigger, function in _HISTORY_TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {trigger} AFTER INSERT ON contact_lifecycle_changes "
            f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    op.add_column(
        "attribution_deltas",
        sa.Column("folded", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "lead_deltas", sa.Column("folded", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )
    op.execute("UPDATE attribution_deltas SET folded = true")
    op.execute("UPDATE lead_deltas SET folded = true")
    op.create_index(
        "ix_attribution_deltas_unfolded",
        "attribution_deltas",
        ["workspace_id"],
        unique=False,
        postgresql_where=sa.text("NOT folded"),
    )
    op.create_index(
        "ix_lead_deltas_unfolded",
        "lead_deltas",
        ["workspace_id"],
        unique=False,
        postgresql_where=sa.text("NOT folded"),
    )
    op.execute("LOCK TABLE attribution_pending, lead_pending IN EXCLUSIVE MODE")
    functions = ", ".join(f"'{f}'" for f in _WRITERS)
    op.execute(_RETARGET.format(functions=functions, a="pending", b="deltas"))
    # the pending rows become unfolded delta rows (the next fold sums them)
    op.execute(
        "INSERT INTO attribution_deltas (workspace_id, hour, source, archived, currency, contacts, leads, "
        "customers, amount) SELECT workspace_id, hour, source, archived, currency, contacts, leads, customers, "
        "amount FROM attribution_pending"
    )
    op.execute(
        "INSERT INTO lead_deltas (workspace_id, hour, source, archived, leads) "
        "SELECT workspace_id, hour, source, archived, leads FROM lead_pending"
    )
    op.drop_table("lead_pending")
    op.drop_table("attribution_pending")
