"""search_text folded as textsearch.py folds queries: accents dropped, and a contact's phone as E.164 digits

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
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("activities", "companies", "custom_fields", "sla_policies", "contacts", "deals", "tickets")
BATCH = 5000


def _refold(table: str) -> None:
    bind = op.get_bind()
    phone = "phone" if table == "contacts" else "NULL::text"
    after = None
    while True:
        rows = bind.execute(
            sa.text(
                f"SELECT id, search_text, {phone} AS phone FROM {table} "
                "WHERE (CAST(:after AS uuid) IS NULL OR id > CAST(:after AS uuid)) ORDER BY id LIMIT :n"
            ),
            {"after": after, "n": BATCH},
        ).all()
        if not rows:
            return
        ids, texts = [], []
        for r in rows:
            text = fold(r.search_text)
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
    for table in TABLES:
        _refold(table)


def downgrade() -> None:
    pass  # the folded text is still what the previous code matched (lower-cased), less its accents
