"""Search: ``ix_contacts_search_prefix``, a btree of each contact's search text by workspace, so a name typed
whole (a contact's text starts with its names) is read as an index range instead of a trigram scan, whose
cost grows with how common the name's trigrams are (2,500 María Garcías in a million contacts).

Revision ID: 0026
Revises: 0027
Create Date: 2026-11-30 19:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_contacts_search_prefix",
        "contacts",
        ["workspace_id", "search_text"],
        postgresql_ops={"search_text": "text_pattern_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_contacts_search_prefix", table_name="contacts")
