"""search_text folded as textsearch.py folds queries: accents dropped, a contact's phone as E.164 digits;
tickets get a number (``ticket_numbers``), which their search_text holds

The columns and their trigram indexes stay; only their text changes. The application writes the new form
from this revision on (resources/writes.py); this rewrites the rows already there, in batches of
``BATCH`` ids in key order, each one statement. No trigger runs on an update of ``search_text`` alone.

Revision ID: 0021
Revises: 0018
Create Date: 2026-11-30 15:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from crm_api.textsearch import fold, phone_digits

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("activities", "companies", "custom_fields", "sla_policies", "contacts", "deals", "tickets")
BATCH = 5000


def _refold(table: str) -> None:
    bind = op.get_bind()
    phone = "phone" if table == "contacts" else "NULL::text"
    number = "number" if table == "tickets" else "NULL::bigint"
    after = None
    while True:
        rows = bind.execute(
            sa.text(
                f"SELECT id, search_text, {phone} AS phone, {number} AS number FROM {table} "
                "WHERE (CAST(:after AS uuid) IS NULL OR id > CAST(:after AS uuid)) ORDER BY id LIMIT :n"
            ),
            {"after": after, "n": BATCH},
        ).all()
        if not rows:
            return
        ids, texts = [], []
        for r in rows:
            text = fold(r.search_text)
            if r.number is not None:
                text = f"{r.number} {text}".strip()
            digits = phone_digits(r.phone) if text else None  # an erased contact stays blank
            if digits and digits not in text:
                text = f"{text} {digits}"
            if text != r.search_text:
                ids.append(r.id)
                texts.append(text)
        if ids:
            bind.execute(
                sa.text(
                    f"UPDATE {table} AS t SET search_text = v.text "
                    "FROM unnest(CAST(:ids AS uuid[]), CAST(:texts AS text[])) AS v(id, text) WHERE t.id = v.id"
                ),
                {"ids": ids, "texts": texts},
            )
        after = rows[-1].id


def upgrade() -> None:
    op.execute("CREATE SEQUENCE ticket_numbers AS bigint")
    op.execute("ALTER TABLE tickets ADD COLUMN number bigint")
    # the tickets there, numbered in the order they were made
    op.execute(
        "UPDATE tickets AS t SET number = o.n FROM "
        "(SELECT workspace_id, id, row_number() OVER (ORDER BY created_at, id) AS n FROM tickets) AS o "
        "WHERE t.workspace_id = o.workspace_id AND t.id = o.id"
    )
    op.execute("SELECT setval('ticket_numbers', coalesce((SELECT max(number) FROM tickets), 0) + 1, false)")
    op.execute("ALTER TABLE tickets ALTER COLUMN number SET DEFAULT nextval('ticket_numbers'::regclass)")
    op.execute("ALTER TABLE tickets ALTER COLUMN number SET NOT NULL")
    op.execute("ALTER SEQUENCE ticket_numbers OWNED BY tickets.number")
    for table in TABLES:
        _refold(table)


def downgrade() -> None:
    # the folded text stays: still what the previous code matched (lower-cased), less its accents
    op.execute("ALTER TABLE tickets DROP COLUMN number")  # and its sequence with it
