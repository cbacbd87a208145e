"""Every arrival kept: ledger hash and original path, per-SOP-instance arrival decisions;
batch attempts for runs that failed, were canceled or whose process died.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("ledger") as t:
        t.add_column(sa.Column("sha256", sa.String(64)))
        t.add_column(sa.Column("original_path", sa.Text))
    op.create_index("ix_ledger_sop", "ledger", ["sop_uid"])
    with op.batch_alter_table("batches") as t:
        t.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="1"))
        t.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True)))
        t.add_column(sa.Column("last_failure", sa.Text))
        t.add_column(sa.Column("run_pid", sa.Integer))
        t.add_column(sa.Column("run_host", sa.String(255)))
    op.create_table(
        "arrival_decisions",
        sa.Column("ledger_id", Id, sa.ForeignKey("ledger.id"), primary_key=True),
        sa.Column("sop_uid", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("winner_ledger_id", Id),
        sa.Column("batch_id", Id),
        sa.Column("run_id", sa.String(64)),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_arrival_decisions_sop", "arrival_decisions", ["sop_uid"])


def downgrade() -> None:
    op.drop_table("arrival_decisions")
    with op.batch_alter_table("batches") as t:
        for name in ("run_host", "run_pid", "last_failure", "next_attempt_at", "attempts"):
            t.drop_column(name)
    op.drop_index("ix_ledger_sop", "ledger")
    with op.batch_alter_table("ledger") as t:
        t.drop_column("original_path")
        t.drop_column("sha256")
