"""Search: ``ix_contacts_email_prefix``, a btree of each contact's email by workspace in byte order, so an
email's local part or its start (``emma.lee123``) is read as an index range instead of a trigram scan.
``ix_contacts_email`` stays for lists sorted by email (the default operator class, which a prefix range
cannot use under every collation).

Revision ID: 0034
Revises: 0029
Create Date: 2026-11-30 22:45:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0034"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_contacts_email_prefix",
        "contacts",
        ["workspace_id", "email"],
        postgresql_ops={"email": "text_pattern_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_contacts_email_prefix", table_name="contacts")
