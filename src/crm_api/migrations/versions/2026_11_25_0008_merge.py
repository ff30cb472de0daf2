"""merge: merged_into on contacts and companies; indexes behind the duplicate finder

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("contacts", sa.Column("merged_into", sa.UUID(), nullable=True))
    op.add_column("companies", sa.Column("merged_into", sa.UUID(), nullable=True))
    # pg_trgm comes from 0001. The expressions must stay byte-for-byte those in models/crm.py and
    # merge/duplicates.py, or the planner cannot use the indexes.
    op.execute(
        "CREATE INDEX ix_contacts_name_trgm ON contacts USING gin "
        "(lower((coalesce(first_name, '') || ' ') || coalesce(last_name, '')) gin_trgm_ops)"
    )
    op.execute("CREATE INDEX ix_companies_name_trgm ON companies USING gin (lower(name) gin_trgm_ops)")
    op.execute(
        "CREATE INDEX ix_contacts_phone_digits ON contacts "
        "(workspace_id, regexp_replace(phone, '[^0-9]', '', 'g'))"
    )


def downgrade() -> None:
    op.drop_index("ix_contacts_phone_digits", table_name="contacts")
    op.drop_index("ix_companies_name_trgm", table_name="companies")
    op.drop_index("ix_contacts_name_trgm", table_name="contacts")
    op.drop_column("companies", "merged_into")
    op.drop_column("contacts", "merged_into")
