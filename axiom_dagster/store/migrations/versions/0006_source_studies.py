"""Per source and study retrieval state of poll sensors and backfills.

Revision ID: 0006
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_studies",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("study_uid", sa.String(64), primary_key=True),
        sa.Column("study_date", sa.String(8)),
        sa.Column("instances_expected", sa.Integer),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("instances_fetched", sa.Integer, nullable=False, server_default="0"),
        sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("run_id", sa.String(64)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_source_studies_status", "source_studies", ["source", "status"])
    op.create_index("ix_source_studies_date", "source_studies", ["source", "study_date"])

def downgrade() -> None:
    op.drop_index("ix_source_studies_date", "source_studies")
    op.drop_index("ix_source_studies_status", "source_studies")
    op.drop_table("source_studies")
