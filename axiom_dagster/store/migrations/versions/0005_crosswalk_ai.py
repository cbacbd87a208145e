"""Lookup misses (crosswalks, AI) and the AI answer cache and usage counters.

Revision ID: 0005
Revises: 0002
Spelled out as at this revision (crosswalks/misses.py and ai/cache.py hold the live tables).
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lookup_misses",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("key_text", sa.String(1024), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_id", sa.String(64)),
        sa.UniqueConstraint("kind", "name", "key_text", name="uq_lookup_misses_key"),
    )
    op.create_table(
        "ai_cache",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("prompt_version", sa.String(32), nullable=False),
        sa.Column("vocabulary", sa.String(128), nullable=False),
        sa.Column("input_value", sa.String(1024), nullable=False),
        sa.Column("output_value", sa.String(1024)),
        sa.Column("reviewed_value", sa.String(1024)),
        sa.Column("reviewed_by", sa.String(64)),
        sa.Column("reviewed_at", sa.DateTime(timezone=True)),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("provider", "model", "prompt_version", "input_value", name="uq_ai_cache_key"),
    )
    op.create_table(
        "ai_usage",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.UniqueConstraint("day", "provider", name="uq_ai_usage_day"),
    )


def downgrade() -> None:
    op.drop_table("ai_usage")
    op.drop_table("ai_cache")
    op.drop_table("lookup_misses")
