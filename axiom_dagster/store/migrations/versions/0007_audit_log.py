"""Tamper-evident audit log: audit_log (hash chain), audit_head, instance_routes; triggers
that refuse UPDATE and DELETE on the two append-only tables (see axiom_dagster/store/audit.py).

Revision ID: 0007
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_log", "instance_routes")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256)),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_action", "audit_log", ["action", "target"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.execute(sa.text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :genesis)").bindparams(genesis="0" * 64))
    op.create_table(
        "instance_routes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("audit_seq", sa.BigInteger, nullable=False),
        sa.Column("routed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ledger_id", sa.BigInteger),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("sop_uid", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("location", sa.Text),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.BigInteger),
        sa.Column("run_id", sa.String(64)),
    )
    op.create_index("ix_instance_routes_audit_seq", "instance_routes", ["audit_seq"])
    op.create_index("ix_instance_routes_sop", "instance_routes", ["sop_uid"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION axiom_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        for table in APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION axiom_refuse_change()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION axiom_refuse_change()")
    else:
        for table in APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")


def downgrade() -> None:
    for table in APPEND_ONLY:
        op.drop_table(table)  # drops its triggers too
    op.drop_table("audit_head")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS axiom_refuse_change()")
