"""State store tables (SQLAlchemy Core). Alembic migrations in migrations/ create them.

The arrival ledger is append-only; everything else records what happened to what arrived.
"""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only auto-increments INTEGER PRIMARY KEY; BigInteger elsewhere.
Id = BigInteger().with_variant(Integer(), "sqlite")
UID = String(64)
AE = String(16)

ledger = Table(
    "ledger",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("arrival_date", String(10), nullable=False),  # YYYY-MM-DD (UTC), the partition key
    Column("study_uid", UID, nullable=False),
    Column("series_uid", UID, nullable=False),
    Column("sop_uid", UID, nullable=False),
    Column("sop_class_uid", UID),
    Column("transfer_syntax_uid", UID),
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("source", String(64), nullable=False),
    Column("calling_ae", AE),
    Column("called_ae", AE),
    Column("source_ip", String(45)),
    Column("association_id", String(64)),
    # SHA-256 of the encoded data set (identical re-sends compare equal) and, for imports,
    # the path the file was landed from (revision 0003).
    Column("sha256", String(64)),
    Column("original_path", Text),
    Index("ix_ledger_study", "study_uid"),
    Index("ix_ledger_sop", "sop_uid"),
)

associations = Table(
    "associations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("calling_ae", AE),
    Column("called_ae", AE),
    Column("source_ip", String(45)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("instances", Integer, nullable=False, default=0),
)

studies = Table(
    "studies",
    metadata,
    Column("study_uid", UID, primary_key=True),
    # receiving -> queued -> processing -> done | failed (back to receiving on new arrivals)
    Column("status", String(16), nullable=False),
    Column("first_arrival_at", DateTime(timezone=True), nullable=False),
    Column("last_arrival_at", DateTime(timezone=True), nullable=False),
    Column("arrival_date", String(10), nullable=False),
    Column("instances_received", Integer, nullable=False),
    # Highest ledger id seen for the study and whether its senders all closed their associations.
    Column("last_ledger_id", Id, nullable=False),
    Column("batch_id", Id),
    Column("run_id", String(64)),
    Column("partition", String(32)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_studies_status", "status", "last_arrival_at"),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("partition", String(32), nullable=False),
    # requested -> running -> done | retry_wait (-> requested) | failed (final)
    Column("status", String(16), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("run_id", String(64)),
    Column("studies", Integer, nullable=False),
    Column("instances", Integer, nullable=False),
    # Runs requested for the batch; when the next may start; why the last one failed; the
    # run process (pid on host) that is working on it (revision 0003).
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_failure", Text),
    Column("run_pid", Integer),
    Column("run_host", String(255)),
    Index("ix_batches_status", "status"),
)

batch_items = Table(
    "batch_items",
    metadata,
    Column("batch_id", Id, ForeignKey("batches.id"), primary_key=True),
    Column("ledger_id", Id, ForeignKey("ledger.id"), primary_key=True),
    Column("study_uid", UID, nullable=False),
    Index("ix_batch_items_ledger", "ledger_id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ledger_id", Id, ForeignKey("ledger.id"), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("study_uid", UID, nullable=False),
    Column("sop_uid", UID, nullable=False),
    # pending -> sent -> confirmed | failed (failed with next_attempt_at set is retried)
    Column("status", String(16), nullable=False),
    Column("location", Text),
    Column("attempts", Integer, nullable=False, default=1),
    Column("batch_id", Id),
    Column("run_id", String(64)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("error", Text),  # the reason of the last failure (no element values)
    Column("status_code", Integer),  # DIMSE status or HTTP status of the last answer
    Column("source_path", Text),
    Column("first_attempt_at", DateTime(timezone=True)),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("confirmed_at", DateTime(timezone=True)),
    Column("verified_at", DateTime(timezone=True)),
    UniqueConstraint("ledger_id", "destination", name="uq_delivery_instance_destination"),
    Index("ix_deliveries_due", "destination", "status", "next_attempt_at"),
    Index("ix_deliveries_study", "study_uid"),
)

exceptions = Table(
    "exceptions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("stage", String(16), nullable=False),  # landing | validate | morph | route | deliver
    Column("reason", Text, nullable=False),
    Column("ledger_id", Id),
    Column("study_uid", UID),
    Column("sop_uid", UID),
    Column("quarantine_path", Text),
    Column("batch_id", Id),
    Column("run_id", String(64)),
    Column("retries", Integer, nullable=False, default=0),
    Column("next_retry_at", DateTime(timezone=True)),
    Column("resolved_at", DateTime(timezone=True)),
    Column("destination", String(64)),
    Column("resolved_by", String(128)),
    Column("resolution", Text),
    Index("ix_exceptions_study", "study_uid"),
)

# Which arrival of a SOP Instance UID the pipeline used (winner), which it did not
# (superseded: an older or failed arrival; duplicate: identical bytes to one already handled).
arrival_decisions = Table(
    "arrival_decisions",
    metadata,
    Column("ledger_id", Id, ForeignKey("ledger.id"), primary_key=True),
    Column("sop_uid", UID, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("winner_ledger_id", Id),
    Column("batch_id", Id),
    Column("run_id", String(64)),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Index("ix_arrival_decisions_sop", "sop_uid"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("study_uid", UID),
    Column("run_id", String(64)),
    Column("detail", Text),
)

# What remote sources (poll sensors, backfills) found and retrieved, one row per source and
# study: makes retrieval resumable and records DIMSE/HTTP failures with the study.
source_studies = Table(
    "source_studies",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("study_uid", UID, primary_key=True),
    Column("study_date", String(8)),  # YYYYMMDD as the source reported it
    Column("instances_expected", Integer),
    # found -> requested -> retrieving -> done | failed
    Column("status", String(16), nullable=False),
    Column("instances_fetched", Integer, nullable=False, default=0),
    Column("bytes", BigInteger, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),  # protocol status / HTTP error; never element values
    Column("run_id", String(64)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_source_studies_status", "source", "status"),
    Index("ix_source_studies_date", "source", "study_date"),
)

# The catalog's SOP Instance UID index (catalog/uid_index.py): each indexed instances file
# (`catalog`: a short id of the catalog's root) and the UIDs it holds. Files not listed here
# are not indexed and are read in full when a batch is written.
catalog_files = Table(
    "catalog_files",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("catalog", String(32), nullable=False),
    Column("file", String(512), nullable=False),
    Column("indexed_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("catalog", "file", name="uq_catalog_files"),
)

catalog_uids = Table(
    "catalog_uids",
    metadata,
    Column("sop_uid", UID, primary_key=True),
    Column("file_id", Id, ForeignKey("catalog_files.id"), primary_key=True),
    Index("ix_catalog_uids_file_id", "file_id"),  # forget() deletes by file
)
