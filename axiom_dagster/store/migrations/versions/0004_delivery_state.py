"""Confirmed delivery: per instance × destination state with status code, reason and retry
schedule; exceptions name their destination and who resolved them.

Revision ID: 0004
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DELIVERY_COLUMNS = [
    # DIMSE status (e.g. 0xA700) or HTTP status of the last answer; error holds the reason.
    ("status_code", sa.Integer),
    # The copy to send (a staged file for network destinations).
    ("source_path", sa.Text),
    ("first_attempt_at", sa.DateTime(timezone=True)),
    ("next_attempt_at", sa.DateTime(timezone=True)),
    ("confirmed_at", sa.DateTime(timezone=True)),
    # Query-back verification (C-FIND / QIDO-RS): when the destination reported the instance.
    ("verified_at", sa.DateTime(timezone=True)),
]
EXCEPTION_COLUMNS = [
    ("destination", sa.String(64)),
    ("resolved_by", sa.String(128)),
    ("resolution", sa.Text),
]


def upgrade() -> None:
    for name, kind in DELIVERY_COLUMNS:
        op.add_column("deliveries", sa.Column(name, kind))
    for name, kind in EXCEPTION_COLUMNS:
        op.add_column("exceptions", sa.Column(name, kind))
    op.create_index("ix_deliveries_due", "deliveries", ["destination", "status", "next_attempt_at"])
    op.create_index("ix_deliveries_study", "deliveries", ["study_uid"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_study", "deliveries")
    op.drop_index("ix_deliveries_due", "deliveries")
    with op.batch_alter_table("exceptions") as batch:
        for name, _ in EXCEPTION_COLUMNS:
            batch.drop_column(name)
    with op.batch_alter_table("deliveries") as batch:
        for name, _ in DELIVERY_COLUMNS:
            batch.drop_column(name)
