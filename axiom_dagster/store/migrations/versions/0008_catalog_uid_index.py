"""Catalog SOP Instance UID index: which catalog file holds which UID (catalog/uid_index.py),
so writing a batch reads only the files that can hold its UIDs, not the whole catalog.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "catalog_files",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("catalog", sa.String(32), nullable=False),
        sa.Column("file", sa.String(512), nullable=False),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("catalog", "file", name="uq_catalog_files"),
    )
    op.create_table(
        "catalog_uids",
        sa.Column("sop_uid", sa.String(64), primary_key=True),
        sa.Column("file_id", Id, sa.ForeignKey("catalog_files.id"), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("catalog_uids")
    op.drop_table("catalog_files")
