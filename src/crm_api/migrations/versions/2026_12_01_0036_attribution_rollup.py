"""Attribution summed from append-only deltas: per contact its counted facts, per (workspace, UTC hour of
creation, source, archived, currency) the signed changes, written by triggers on contacts, the lifecycle
history, deals and orders (per statement for inserts and deletes; per row for updates, and only when a column
that matters changed: any other update runs nothing)

Revision ID: 0036
Revises: 0037
Create Date: 2026-12-01 03:10:00.000000

Every write that can change what the report counts of a contact (its creation time, source, archiving,
lifecycle stage; a lead entry in the history; a won deal of which it is the primary contact; a paid or
fulfilled order) recomputes that contact's facts from the tables in ``refresh_contact_attribution``. The
contact's row in ``contact_attribution`` is locked first, so two writers of the same contact queue there and
the second recomputes from what the first committed; writers of different contacts share no row.
When the facts changed, the old ones go out and the new ones in as rows appended to ``attribution_deltas``
(one per group the statement touched, never an UPDATE). The fold job sums them now and then.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0036"
down_revision: str | None = "0037"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The delta rows of a set of per-contact facts ``m`` with a sign ``m.sign``: one row of counts (currency
# null) and one per currency of its won deals (``contacts`` there counts the contacts with that currency,
# so a won amount of 0.00 still shows its currency).
_EXPAND = """
    SELECT {ws}, date_trunc('hour', m.created_at, 'UTC'), m.source, m.archived, x.currency,
           sum(m.sign * x.contacts), sum(m.sign * x.leads), sum(m.sign * x.customers),
           sum(m.sign * x.amount){folded}
    FROM {moves} AS m
    CROSS JOIN LATERAL (
        SELECT NULL::text AS currency, 1 AS contacts, m.ever_lead::int AS leads, m.buyer::int AS customers,
               NULL::numeric AS amount
        UNION ALL
        SELECT e.key, 1, 0, 0, e.value::numeric FROM jsonb_each_text(m.won) AS e
    ) AS x
    GROUP BY {group}
    HAVING sum(m.sign * x.contacts) <> 0 OR sum(m.sign * x.leads) <> 0 OR sum(m.sign * x.customers) <> 0
        OR coalesce(sum(m.sign * x.amount), 0) <> 0
"""

_COLUMNS = "contact_id, created_at, source, archived, ever_lead, buyer, won"

_REFRESH = f"""
CREATE FUNCTION refresh_contact_attribution(ws uuid, ids uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- the contacts' rows first, in one order (no deadlock between two batches); the statement below
    -- takes a new snapshot, so it sees what a writer this one waited for committed ($1, $2: ws, ids)
    PERFORM 1 FROM contact_attribution AS a
    WHERE a.workspace_id = $1 AND a.contact_id = ANY($2) ORDER BY a.contact_id FOR UPDATE;
    WITH wanted AS (
        SELECT c.id AS contact_id, c.created_at, c.source, c.archived_at IS NOT NULL AS archived,
               coalesce(c.lifecycle_stage = 'lead', false) OR EXISTS (
                   SELECT 1 FROM contact_lifecycle_changes AS h
                   WHERE h.workspace_id = ws AND h.contact_id = c.id AND h.to_stage = 'lead') AS ever_lead,
               EXISTS (
                   SELECT 1 FROM deals AS d
                   WHERE d.workspace_id = ws AND d.contact_id = c.id AND d.status = 'won'
                     AND d.archived_at IS NULL)
               OR EXISTS (
                   SELECT 1 FROM orders AS o
                   WHERE o.workspace_id = ws AND o.contact_id = c.id
                     AND o.status IN ('paid', 'fulfilled')) AS buyer,
               (SELECT jsonb_object_agg(s.currency, s.amount) FROM (
                    SELECT d.currency, sum(d.amount) AS amount FROM deals AS d
                    WHERE d.workspace_id = ws AND d.contact_id = c.id AND d.status = 'won'
                      AND d.archived_at IS NULL AND d.currency IS NOT NULL AND d.amount IS NOT NULL
                    GROUP BY d.currency) AS s) AS won
        FROM contacts AS c
        WHERE c.workspace_id = ws AND c.id = ANY(ids)
    ),
    was AS (
        SELECT {_COLUMNS} FROM contact_attribution AS a
        WHERE a.workspace_id = ws AND a.contact_id = ANY(ids)
    ),
    changed AS (
        SELECT coalesce(w.contact_id, o.contact_id) AS contact_id
        FROM wanted AS w FULL JOIN was AS o ON o.contact_id = w.contact_id
        WHERE (w.*) IS DISTINCT FROM (o.*)
    ),
    removed AS (
        DELETE FROM contact_attribution AS a
        WHERE a.workspace_id = ws AND a.contact_id IN (SELECT contact_id FROM changed)
          AND a.contact_id NOT IN (SELECT contact_id FROM wanted)
    ),
    kept AS (
        INSERT INTO contact_attribution AS a (workspace_id, {_COLUMNS})
        SELECT ws, w.* FROM wanted AS w WHERE w.contact_id IN (SELECT contact_id FROM changed)
        ON CONFLICT (workspace_id, contact_id) DO UPDATE
        SET created_at = excluded.created_at, source = excluded.source, archived = excluded.archived,
            ever_lead = excluded.ever_lead, buyer = excluded.buyer, won = excluded.won
    ),
    moves AS (
        SELECT -1 AS sign, o.* FROM was AS o WHERE o.contact_id IN (SELECT contact_id FROM changed)
        UNION ALL
        SELECT 1, w.* FROM wanted AS w WHERE w.contact_id IN (SELECT contact_id FROM changed)
    )
    INSERT INTO attribution_deltas
        (workspace_id, hour, source, archived, currency, contacts, leads, customers, amount)
    {_EXPAND.format(ws="ws", folded="", moves="moves", group="2, 3, 4, 5")};
END
$$
"""

# A new contact's facts straight from its row, no look-up and no lock: a deal, an order or a history row
# naming it is written after it (or in the same statement), and that table's trigger refreshes it; if that
# trigger ran first, the contact's row is there already and this one leaves it (and its counts) alone.
_CONTACTS_INSERT = f"""
CREATE FUNCTION attribution_contacts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH put AS (
        INSERT INTO contact_attribution (workspace_id, {_COLUMNS})
        SELECT n.workspace_id, n.id, n.created_at, n.source, n.archived_at IS NOT NULL,
               coalesce(n.lifecycle_stage = 'lead', false), false, NULL
        FROM new_rows AS n
        ON CONFLICT (workspace_id, contact_id) DO NOTHING
        RETURNING 1 AS sign, workspace_id, {_COLUMNS}
    )
    INSERT INTO attribution_deltas
        (workspace_id, hour, source, archived, currency, contacts, leads, customers, amount)
    {_EXPAND.format(ws="m.workspace_id", folded="", moves="put", group="1, 2, 3, 4, 5")};
    RETURN NULL;
END
$$
"""

# table: (its contact id column, the columns a change of which matters, the rows that matter: ``r.`` the row)
_WATCHED = {
    "contacts": ("id", "created_at, source, archived_at, lifecycle_stage", "true"),
    "contact_lifecycle_changes": ("contact_id", "contact_id, to_stage", "r.to_stage = 'lead'"),
    "deals": ("contact_id", "contact_id, status, amount, currency, archived_at", "r.status = 'won'"),
    "orders": ("contact_id", "contact_id, status", "r.status IN ('paid', 'fulfilled')"),
}

_TOUCH = """
CREATE FUNCTION attribution_{table}_{op}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM refresh_contact_attribution(t.workspace_id, t.ids)
    FROM (SELECT r.workspace_id, array_agg(DISTINCT r.{cid}) AS ids FROM {rows} AS r
          WHERE r.{cid} IS NOT NULL AND {relevant} GROUP BY r.workspace_id) AS t;
    RETURN NULL;
END
$$
"""

# An update is one row at a time, and only when a column that matters changed in a row that matters (the
# trigger's WHEN): an update of anything else (name, title, tags, custom fields, the settles' own columns)
# runs no function and builds no transition table. Its contact before and after (null: not one that matters).
_TOUCH_ROW = """
CREATE FUNCTION attribution_{table}_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM refresh_contact_attribution(NEW.workspace_id, ARRAY[
        CASE WHEN {old_relevant} THEN OLD.{cid} END, CASE WHEN {new_relevant} THEN NEW.{cid} END]);
    RETURN NULL;
END
$$
"""

_KNOWN_LEAD = """ AND NOT EXISTS (
              SELECT 1 FROM contact_attribution AS a
              WHERE a.workspace_id = r.workspace_id AND a.contact_id = r.contact_id AND a.ever_lead)"""

_CHANGED = "((SELECT {cols} FROM {a} EXCEPT SELECT {cols} FROM {b}) UNION ALL (SELECT {cols} FROM {b} EXCEPT SELECT {cols} FROM {a}))"


def _when(columns: str, relevant: str = "true") -> str:
    """A row trigger's WHEN: one of ``columns`` changed, in a row that matters before or after."""
    names = [c.strip() for c in columns.split(",")]
    old = ", ".join(f"OLD.{c}" for c in names)
    new = ", ".join(f"NEW.{c}" for c in names)
    matters = f" AND ({relevant.replace('r.', 'OLD.')} OR {relevant.replace('r.', 'NEW.')})"
    return f"WHEN (ROW({old}) IS DISTINCT FROM ROW({new}){matters if relevant != 'true' else ''})"


def _triggers() -> list[str]:
    out = []
    for table, (cid, cols, relevant) in _WATCHED.items():
        out.append(
            _TOUCH_ROW.format(
                table=table,
                cid=cid,
                old_relevant=relevant.replace("r.", "OLD."),
                new_relevant=relevant.replace("r.", "NEW."),
            )
        )
        out.append(
            f"CREATE TRIGGER attribution_update AFTER UPDATE ON {table} FOR EACH ROW "
            f"{_when(cols, relevant)} EXECUTE FUNCTION attribution_{table}_update()"
        )
        for op_name, rows in (("insert", "new_rows"), ("delete", "old_rows")):
            if (table, op_name) == ("contacts", "insert"):
                out.append(_CONTACTS_INSERT)
            else:
                # another entry into lead changes nothing for a contact known to have been one
                known = _KNOWN_LEAD if (table, op_name) == ("contact_lifecycle_changes", "insert") else ""
                out.append(
                    _TOUCH.format(table=table, op=op_name, cid=cid, rows=rows, relevant=relevant + known)
                )
            tables = {"insert": "NEW TABLE AS new_rows", "delete": "OLD TABLE AS old_rows"}[op_name]
            out.append(
                f"CREATE TRIGGER attribution_{op_name} AFTER {op_name.upper()} ON {table} "
                f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION attribution_{table}_{op_name}()"
            )
    return out


_BACKFILL = f"""
INSERT INTO contact_attribution (workspace_id, {_COLUMNS})
SELECT c.workspace_id, c.id, c.created_at, c.source, c.archived_at IS NOT NULL,
       coalesce(c.lifecycle_stage = 'lead', false) OR l.contact_id IS NOT NULL,
       b.contact_id IS NOT NULL, w.won
FROM contacts AS c
LEFT JOIN (SELECT DISTINCT workspace_id, contact_id FROM contact_lifecycle_changes WHERE to_stage = 'lead') AS l
    ON l.workspace_id = c.workspace_id AND l.contact_id = c.id
LEFT JOIN (
    SELECT workspace_id, contact_id FROM deals
    WHERE status = 'won' AND archived_at IS NULL AND contact_id IS NOT NULL
    UNION
    SELECT workspace_id, contact_id FROM orders WHERE status IN ('paid', 'fulfilled')
) AS b ON b.workspace_id = c.workspace_id AND b.contact_id = c.id
LEFT JOIN (
    SELECT s.workspace_id, s.contact_id, jsonb_object_agg(s.currency, s.amount) AS won FROM (
        SELECT workspace_id, contact_id, currency, sum(amount) AS amount FROM deals
        WHERE status = 'won' AND archived_at IS NULL AND contact_id IS NOT NULL
          AND currency IS NOT NULL AND amount IS NOT NULL
        GROUP BY workspace_id, contact_id, currency) AS s
    GROUP BY s.workspace_id, s.contact_id
) AS w ON w.workspace_id = c.workspace_id AND w.contact_id = c.id
"""

_BACKFILL_DELTAS = f"""
INSERT INTO attribution_deltas
    (workspace_id, hour, source, archived, currency, contacts, leads, customers, amount, folded)
{
    _EXPAND.format(
        ws="m.workspace_id",
        folded=", true",
        moves="(SELECT 1 AS sign, a.* FROM contact_attribution AS a)",
        group="1, 2, 3, 4, 5",
    )
}
"""


# Lead conversion: each entry into lead carries its contact's previous entry into lead, its first entry into
# customer after it, and the contact's source and archiving now, so the report reads one partial index.
# Both from one pass over the contact's history on ix_contact_lifecycle_changes_contact (workspace, contact,
# changed_at, id; to_stage included): no predicate on to_stage, so no plan (a cached generic one either) can
# prefer an index by stage and read every lead or customer entry of the workspace.
_LEAD_FACTS = """
    SELECT x.workspace_id, x.id, x.prior_lead_at, x.converted_at, c.source, c.archived_at IS NOT NULL AS archived
    FROM (
        SELECT e.workspace_id, e.id, e.contact_id, e.to_stage,
               max(e.changed_at) FILTER (WHERE e.to_stage = 'lead') OVER (
                   PARTITION BY e.workspace_id, e.contact_id ORDER BY e.changed_at, e.id
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prior_lead_at,
               min(e.changed_at) FILTER (WHERE e.to_stage = 'customer') OVER (
                   PARTITION BY e.workspace_id, e.contact_id ORDER BY e.changed_at
                   RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING EXCLUDE GROUP) AS converted_at
        FROM contact_lifecycle_changes AS e
        WHERE {where}
    ) AS x
    JOIN contacts AS c ON c.workspace_id = x.workspace_id AND c.id = x.contact_id
    WHERE x.to_stage = 'lead'
"""

_SETTLE_LEADS = """
UPDATE contact_lifecycle_changes AS h
SET prior_lead_at = x.prior_lead_at, converted_at = x.converted_at, source = x.source, archived = x.archived
FROM ({facts}) AS x
WHERE h.workspace_id = x.workspace_id AND h.id = x.id
  AND (h.prior_lead_at, h.converted_at, h.source, h.archived)
      IS DISTINCT FROM (x.prior_lead_at, x.converted_at, x.source, x.archived)
"""

# PL/pgSQL, so its plan is kept per session (a SQL function plans its statement at every call).
_SETTLE_FUNCTION = f"""
CREATE FUNCTION settle_lead_entries(ws uuid, ids uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
{_SETTLE_LEADS.format(facts=_LEAD_FACTS.format(where="e.workspace_id = ws AND e.contact_id = ANY(ids)"))};
END
$$
"""

# (table, event, transition table, the contacts to settle): inserts and deletes per statement
_LEAD_TRIGGERS = [
    ("contact_lifecycle_changes", "insert", "NEW TABLE AS new_rows", "new_rows"),
    ("contact_lifecycle_changes", "delete", "OLD TABLE AS old_rows", "old_rows"),
]

_LEAD_TOUCH = """
CREATE FUNCTION lead_entries_{table}_{op}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM settle_lead_entries(t.workspace_id, t.ids)
    FROM (SELECT r.workspace_id, array_agg(DISTINCT r.contact_id) AS ids FROM {rows} AS r
          WHERE r.to_stage IN ('lead', 'customer'){alone} GROUP BY r.workspace_id) AS t;
    RETURN NULL;
END
$$
"""

# A new entry that is its contact's only entry into lead or customer (a contact created in lead, mostly) is
# already settled when it comes with no previous or converted entry and its contact's source and archiving
# (as the history's writer writes it): nothing before or after it to settle, so no settle runs. Anything
# else (another entry of the contact, another writer's values) settles as before.
_ALONE = """
            AND (EXISTS (SELECT 1 FROM contact_lifecycle_changes AS b
                         WHERE b.workspace_id = r.workspace_id AND b.contact_id = r.contact_id
                           AND b.id <> r.id AND b.to_stage IN ('lead', 'customer'))
                 OR (r.to_stage = 'lead' AND (r.prior_lead_at IS NOT NULL OR r.converted_at IS NOT NULL
                     OR NOT EXISTS (SELECT 1 FROM contacts AS c
                                    WHERE c.workspace_id = r.workspace_id AND c.id = r.contact_id
                                      AND c.source IS NOT DISTINCT FROM r.source
                                      AND (c.archived_at IS NOT NULL) = r.archived))))"""

# ... and updates a row at a time, only when what the settle reads changed (its own writes do not fire it)
_LEAD_ROW_TRIGGERS = [
    (
        "contact_lifecycle_changes",
        "ARRAY[OLD.contact_id, NEW.contact_id]",
        _when("contact_id, to_stage, changed_at", "r.to_stage IN ('lead', 'customer')"),
    ),
    ("contacts", "ARRAY[NEW.id]", _when("source, archived_at")),
]

_LEAD_TOUCH_ROW = """
CREATE FUNCTION lead_entries_{table}_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM settle_lead_entries(NEW.workspace_id, {ids});
    RETURN NULL;
END
$$
"""


def _lead_triggers() -> list[str]:
    out = [_SETTLE_FUNCTION]
    for table, op_name, tables, rows in _LEAD_TRIGGERS:
        alone = _ALONE if op_name == "insert" else ""
        out.append(_LEAD_TOUCH.format(table=table, op=op_name, rows=rows, alone=alone))
        out.append(
            f"CREATE TRIGGER lead_entries_{op_name} AFTER {op_name.upper()} ON {table} "
            f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION lead_entries_{table}_{op_name}()"
        )
    for table, ids, when in _LEAD_ROW_TRIGGERS:
        out.append(_LEAD_TOUCH_ROW.format(table=table, ids=ids))
        out.append(
            f"CREATE TRIGGER lead_entries_update AFTER UPDATE ON {table} FOR EACH ROW {when} "
            f"EXECUTE FUNCTION lead_entries_{table}_update()"
        )
    return out


# The count of first entries into lead (no earlier one) per hour, source and archived: each statement on the
# history appends its signed change (the settle above moves an entry's source or archived by an UPDATE).
_LEAD_DELTA = """
CREATE FUNCTION lead_deltas_{op}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lead_deltas (workspace_id, hour, source, archived, leads)
    SELECT r.workspace_id, date_trunc('hour', r.changed_at, 'UTC'), r.source, r.archived, sum(r.sign)
    FROM ({rows}) AS r
    WHERE r.to_stage = 'lead' AND r.prior_lead_at IS NULL
    GROUP BY 1, 2, 3, 4
    HAVING sum(r.sign) <> 0;
    RETURN NULL;
END
$$
"""

_LEAD_DELTA_ROWS = {
    "insert": ("NEW TABLE AS new_rows", "SELECT 1 AS sign, n.* FROM new_rows AS n"),
    "delete": ("OLD TABLE AS old_rows", "SELECT -1 AS sign, o.* FROM old_rows AS o"),
}

# An update (the settle's, mostly) a row at a time, only when the entry's count, hour, source or archived
# changed: its old version out, its new one in.
_LEAD_DELTA_UPDATE = """
CREATE FUNCTION lead_deltas_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lead_deltas (workspace_id, hour, source, archived, leads)
    SELECT NEW.workspace_id, date_trunc('hour', v.changed_at, 'UTC'), v.source, v.archived, v.sign
    FROM (VALUES (-1, OLD.to_stage = 'lead' AND OLD.prior_lead_at IS NULL, OLD.changed_at, OLD.source,
                  OLD.archived),
                 (1, NEW.to_stage = 'lead' AND NEW.prior_lead_at IS NULL, NEW.changed_at, NEW.source,
                  NEW.archived)) AS v (sign, counted, changed_at, source, archived)
    WHERE v.counted;
    RETURN NULL;
END
$$
"""
_LEAD_DELTA_WHEN = (
    "WHEN (((OLD.to_stage = 'lead' AND OLD.prior_lead_at IS NULL) "
    "OR (NEW.to_stage = 'lead' AND NEW.prior_lead_at IS NULL)) "
    "AND ROW(OLD.to_stage = 'lead' AND OLD.prior_lead_at IS NULL, date_trunc('hour', OLD.changed_at, 'UTC'), "
    "OLD.source, OLD.archived) IS DISTINCT FROM ROW(NEW.to_stage = 'lead' AND NEW.prior_lead_at IS NULL, "
    "date_trunc('hour', NEW.changed_at, 'UTC'), NEW.source, NEW.archived))"
)

_LEAD_DELTAS_BACKFILL = """
INSERT INTO lead_deltas (workspace_id, hour, source, archived, leads, folded)
SELECT workspace_id, date_trunc('hour', changed_at, 'UTC'), source, archived, count(*), true
FROM contact_lifecycle_changes
WHERE to_stage = 'lead' AND prior_lead_at IS NULL
GROUP BY 1, 2, 3, 4
"""


# The history's writer (migration 0029) now also writes an entry into lead with its contact's source and
# archiving, so the settle after it finds a contact's first entry already right and updates nothing.
_RECORDED = """(n.type = 'contact.created' AND n.data -> 'object' ->> 'lifecycle_stage' IS NOT NULL)
       OR (n.type = 'contact.updated' AND n.data -> 'previous' ? 'lifecycle_stage')"""

_RECORD = """
CREATE OR REPLACE FUNCTION record_contact_lifecycle_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{guard}
    INSERT INTO contact_lifecycle_changes
        (workspace_id, id, contact_id, from_stage, to_stage, changed_at, actor{columns})
    SELECT n.workspace_id, n.id, n.object_id,
           CASE WHEN n.type = 'contact.updated' THEN n.data -> 'previous' ->> 'lifecycle_stage' END,
           n.data -> 'object' ->> 'lifecycle_stage',
           n.created_at, n.actor{values}
    FROM new_rows n{join}
    WHERE {recorded};
    RETURN NULL;
END
$$
"""

# Only when an event changes a stage: an insert into the history, even of no row, fires the history's
# statement triggers (three PL/pgSQL calls), which every other event (a name edited, a deal, a note) would pay.
_RECORD_WITH_FACTS = _RECORD.format(
    guard=f"""
    IF NOT EXISTS (SELECT 1 FROM new_rows AS n WHERE {_RECORDED}) THEN
        RETURN NULL;
    END IF;""",
    recorded=_RECORDED,
    columns=", source, archived",
    values=""",
           CASE WHEN n.data -> 'object' ->> 'lifecycle_stage' = 'lead' THEN c.source END,
           coalesce(n.data -> 'object' ->> 'lifecycle_stage' = 'lead' AND c.archived_at IS NOT NULL, false)""",
    join="""
    LEFT JOIN contacts AS c ON c.workspace_id = n.workspace_id AND c.id = n.object_id""",
)


def upgrade() -> None:
    op.create_table(
        "contact_attribution",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("ever_lead", sa.Boolean(), nullable=False),
        sa.Column("buyer", sa.Boolean(), nullable=False),
        sa.Column("won", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("workspace_id", "contact_id", name=op.f("pk_contact_attribution")),
    )
    op.create_table(
        "attribution_deltas",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("contacts", sa.BigInteger(), nullable=False),
        sa.Column("leads", sa.BigInteger(), nullable=False),
        sa.Column("customers", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(20, 2), nullable=True),
        sa.Column("folded", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_attribution_deltas")),
    )
    op.execute(_BACKFILL)
    op.execute(_BACKFILL_DELTAS)
    op.create_index(
        "ix_contact_attribution_created", "contact_attribution", ["workspace_id", "created_at"], unique=False
    )
    op.create_index(
        "ix_attribution_deltas_hour", "attribution_deltas", ["workspace_id", "hour"], unique=False
    )
    op.create_index(
        "ix_attribution_deltas_unfolded",
        "attribution_deltas",
        ["workspace_id"],
        unique=False,
        postgresql_where=sa.text("NOT folded"),
    )
    op.execute(_REFRESH)
    for statement in _triggers():
        op.execute(statement)
    op.add_column("contact_lifecycle_changes", sa.Column("prior_lead_at", sa.DateTime(timezone=True)))
    op.add_column("contact_lifecycle_changes", sa.Column("converted_at", sa.DateTime(timezone=True)))
    op.add_column("contact_lifecycle_changes", sa.Column("source", sa.Text()))
    op.add_column(
        "contact_lifecycle_changes",
        sa.Column("archived", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.execute(_SETTLE_LEADS.format(facts=_LEAD_FACTS.format(where="true")))
    op.create_index(
        "ix_contact_lifecycle_changes_leads",
        "contact_lifecycle_changes",
        ["workspace_id", "changed_at"],
        unique=False,
        postgresql_include=["prior_lead_at", "converted_at", "source", "archived"],
        postgresql_where=sa.text("to_stage = 'lead'"),
    )
    for statement in _lead_triggers():
        op.execute(statement)
    op.create_index(
        "ix_contact_lifecycle_changes_converted",
        "contact_lifecycle_changes",
        ["workspace_id", "changed_at"],
        unique=False,
        postgresql_include=["prior_lead_at", "converted_at", "source", "archived"],
        postgresql_where=sa.text("to_stage = 'lead' AND converted_at IS NOT NULL"),
    )
    op.create_index(
        "ix_contact_lifecycle_changes_repeat",
        "contact_lifecycle_changes",
        ["workspace_id", "changed_at"],
        unique=False,
        postgresql_include=["prior_lead_at", "source", "archived"],
        postgresql_where=sa.text("to_stage = 'lead' AND prior_lead_at IS NOT NULL"),
    )
    op.create_table(
        "lead_deltas",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("leads", sa.BigInteger(), nullable=False),
        sa.Column("folded", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_lead_deltas")),
    )
    op.execute(_LEAD_DELTAS_BACKFILL)
    op.create_index("ix_lead_deltas_hour", "lead_deltas", ["workspace_id", "hour"], unique=False)
    op.create_index(
        "ix_lead_deltas_unfolded",
        "lead_deltas",
        ["workspace_id"],
        unique=False,
        postgresql_where=sa.text("NOT folded"),
    )
    op.execute(_RECORD_WITH_FACTS)
    for op_name, (tables, rows) in _LEAD_DELTA_ROWS.items():
        op.execute(_LEAD_DELTA.format(op=op_name, rows=rows))
        op.execute(
            f"CREATE TRIGGER lead_deltas_{op_name} AFTER {op_name.upper()} ON contact_lifecycle_changes "
            f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION lead_deltas_{op_name}()"
        )
    op.execute(_LEAD_DELTA_UPDATE)
    op.execute(
        "CREATE TRIGGER lead_deltas_update AFTER UPDATE ON contact_lifecycle_changes FOR EACH ROW "
        f"{_LEAD_DELTA_WHEN} EXECUTE FUNCTION lead_deltas_update()"
    )


def downgrade() -> None:
    op.execute(_RECORD.format(guard="", recorded=_RECORDED, columns="", values="", join=""))
    for op_name in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER lead_deltas_{op_name} ON contact_lifecycle_changes")
        op.execute(f"DROP FUNCTION lead_deltas_{op_name}()")
    op.drop_table("lead_deltas")
    op.drop_index("ix_contact_lifecycle_changes_repeat", table_name="contact_lifecycle_changes")
    op.drop_index("ix_contact_lifecycle_changes_converted", table_name="contact_lifecycle_changes")
    for table, op_name in [(t, o) for t, o, *_ in _LEAD_TRIGGERS] + [
        (t, "update") for t, *_ in _LEAD_ROW_TRIGGERS
    ]:
        op.execute(f"DROP TRIGGER lead_entries_{op_name} ON {table}")
        op.execute(f"DROP FUNCTION lead_entries_{table}_{op_name}()")
    op.execute("DROP FUNCTION settle_lead_entries(uuid, uuid[])")
    op.drop_index("ix_contact_lifecycle_changes_leads", table_name="contact_lifecycle_changes")
    for column in ("archived", "source", "converted_at", "prior_lead_at"):
        op.drop_column("contact_lifecycle_changes", column)
    for table in _WATCHED:
        for op_name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER attribution_{op_name} ON {table}")
            op.execute(f"DROP FUNCTION attribution_{table}_{op_name}()")
    op.execute("DROP FUNCTION refresh_contact_attribution(uuid, uuid[])")
    op.drop_table("attribution_deltas")
    op.drop_table("contact_attribution")
