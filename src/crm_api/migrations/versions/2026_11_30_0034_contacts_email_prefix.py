"""Search, prefixes read as btree ranges (``text_pattern_ops``, byte order) instead of trigram scans:
``ix_contacts_email_prefix``, an email's local part or its start (``emma.lee123``; ``ix_contacts_email``
stays for lists sorted by email, its operator class fits no prefix range under every collation);
``ix_companies_search_prefix``, a company by the start of its name (the ``acme`` of ``ann acme``);
``ix_contacts_company_search``, a company's contacts by the start of their names (the ``ann``), only the
contacts that have a company.

Revision ID: 0034
Revises: 0029
Create Date: 2026-11-30 22:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
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
    op.create_index(
        "ix_companies_search_prefix",
        "companies",
        ["workspace_id", "search_text"],
        postgresql_ops={"search_text": "text_pattern_ops"},
    )
    op.create_index(
        "ix_contacts_company_search",
        "contacts",
        ["workspace_id", "company_id", "search_text"],
        postgresql_ops={"search_text": "text_pattern_ops"},
        postgresql_where=sa.text("company_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_contacts_company_search", table_name="contacts")
    op.drop_index("ix_companies_search_prefix", table_name="companies")
    op.drop_index("ix_contacts_email_prefix", table_name="contacts")
