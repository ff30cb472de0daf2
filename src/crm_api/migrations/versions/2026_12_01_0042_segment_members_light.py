"""Segment entries cost less to write (issue 16): no foreign keys on the membership and its history.

Every entry and exit the segment workers write is a ``segment_members`` row and a ``segment_changes`` row,
and each checked its foreign key to ``segments`` (a look-up of the segment's row, locked ``FOR KEY SHARE``,
per row): with 200 dynamic segments a contact entering 55 of them paid 110 such checks, ~30% of the
PostgreSQL CPU of writing its entries. Both keys go. What they guarded is kept otherwise:

- a member or history row names a segment that exists: ``repository.change_many``, the one writer of
  both tables, writes only for segments its caller read and locked in the same transaction, and the API
  never deletes a segment (it archives it);
- a deleted segment takes its rows with it (the keys' ``ON DELETE CASCADE``, which a workspace's delete
  reached through ``segments``): ``segments_delete_members``, a row trigger on ``segments`` that fires
  on delete only, so the entries' writes pay nothing for it.

Revision ID: 0042
Revises: 0041
Create Date: 2026-12-01 06:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0042"
down_revision: str | None = "0041"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = {
    "segment_members": "fk_segment_members_workspace_id_segment_id_segments",
    "segment_changes": "fk_segment_changes_workspace_id_segment_id_segments",
}


def upgrade() -> None:
    for table, name in KEYS.items():
        op.drop_constraint(name, table, type_="foreignkey")
    op.execute(
        """
        CREATE FUNCTION segments_delete_members() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM segment_members WHERE workspace_id = OLD.workspace_id AND segment_id = OLD.id;
            DELETE FROM segment_changes WHERE workspace_id = OLD.workspace_id AND segment_id = OLD.id;
            RETURN OLD;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER segments_delete_members AFTER DELETE ON segments"
        " FOR EACH ROW EXECUTE FUNCTION segments_delete_members()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER segments_delete_members ON segments")
    op.execute("DROP FUNCTION segments_delete_members()")
    for table, name in KEYS.items():
        # rows a key would refuse (none, if the code kept its word) go first, as the cascade would have
        op.execute(
            f"DELETE FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM segments s"
            " WHERE s.workspace_id = t.workspace_id AND s.id = t.segment_id)"
        )
        op.create_foreign_key(
            name,
            table,
            "segments",
            ["workspace_id", "segment_id"],
            ["workspace_id", "id"],
            ondelete="CASCADE",
        )
