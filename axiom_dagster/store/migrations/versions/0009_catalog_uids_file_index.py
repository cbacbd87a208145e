"""Index catalog_uids by file: dropping a compacted file from the UID index
(UidIndex.forget) deleted its rows by file_id, which the (sop_uid, file_id) key cannot
serve, so each delete scanned the whole table.

Revision ID: 0009
Revises: 0008
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_catalog_uids_file_id", "catalog_uids", ["file_id"])


def downgrade() -> None:
    op.drop_index("ix_catalog_uids_file_id", table_name="catalog_uids")
