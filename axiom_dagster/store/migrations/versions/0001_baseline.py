"""Baseline: ledger, associations, studies, batches, batch_items, deliveries, exceptions, audit.

Revision ID: 0001
Revises:
This baseline creates the tables as schema.py defines them at this revision. When a later
revision changes schema.py, freeze this file first (spell the tables out with op.create_table)
so that 0001 keeps creating the version-1 schema.
"""
from alembic import op

from axiom_dagster.store.schema import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(bind=op.get_bind())


def downgrade() -> None:
    metadata.drop_all(bind=op.get_bind())
