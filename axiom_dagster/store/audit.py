"""The tamper-evident audit log: who did what (admin actions) and which instance went where.

`audit_log` is append-only and hash-chained: row n stores
``hash = sha256(prev_hash + canonical JSON of (seq, at, actor, action, target, details))`` with
``prev_hash`` the hash of row n-1 (64 zeros for row 1). `audit_head` holds the last sequence
number and hash; appending locks it, so writers from any process form one chain. Altering,
deleting or inserting a row breaks the chain, and `verify()` names the first broken row.
Database triggers (migration 0007) refuse UPDATE and DELETE on the log tables; the chain is
the evidence when someone with DDL rights goes around them. An attacker who rewrites the
whole chain and the head is caught only by comparing the head with a copy kept elsewhere
(`axiom audit verify` prints it; `--expect SEQ:HASH` compares).

`instance_routes` records each delivered copy (content SHA-256, destination, location,
time); every recorded group of routes gets one chain entry whose details carry the group's
digest, so the routes are covered by the chain too. A folder copy is recorded by the pipeline
that wrote it (hash of the file); a network delivery when the destination confirmed it, with
the hash of exactly what was sent (after any transcoding) and where (AE@host:port, URL,
object). `audit` (schema.py) is a different table:
the per-study processing trail shown by the study report.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text, insert, select, update

GENESIS = "0" * 64
ROUTE_FIELDS = ("ledger_id", "study_uid", "sop_uid", "destination", "location", "content_sha256")

# Kept apart from schema.metadata; migration 0007 creates these tables, triggers and the head row.
audit_metadata = MetaData()
audit_log = Table(
    "audit_log",
    audit_metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(256)),
    Column("details", Text, nullable=False),  # canonical JSON, exactly what the hash covers
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
audit_head = Table(
    "audit_head",
    audit_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)
instance_routes = Table(
    "instance_routes",
    audit_metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("audit_seq", BigInteger, nullable=False, index=True),
    Column("routed_at", DateTime(timezone=True), nullable=False),
    Column("ledger_id", BigInteger),
    Column("study_uid", String(64), nullable=False),
    Column("sop_uid", String(64), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("location", Text),
    Column("content_sha256", String(64), nullable=False),
    Column("batch_id", BigInteger),
    Column("run_id", String(64)),
)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str | None
    details: dict
    prev_hash: str
    hash: str

    def as_json(self) -> dict:
        return {**self.__dict__, "at": _iso(self.at)}


@dataclass
class Verification:
    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def entry_hash(prev_hash: str, seq: int, at: datetime, actor: str, action: str, target: str | None, details: str) -> str:
    body = canonical_json({"seq": seq, "at": _iso(at), "actor": actor, "action": action, "target": target, "details": details})
    return hashlib.sha256((prev_hash + body).encode("ascii")).hexdigest()


def routes_digest(routes: Iterable[dict]) -> str:
    """SHA-256 over the canonical JSON of route rows (in ledger id, destination order)."""
    ordered = sorted(({k: r.get(k) for k in ROUTE_FIELDS} for r in routes), key=lambda r: (r["ledger_id"] or 0, r["destination"]))
    return hashlib.sha256(canonical_json(ordered).encode("ascii")).hexdigest()


def append(conn, actor: str, action: str, target: str | None = None, details: dict | None = None) -> AuditEntry:
    """Append one entry inside the caller's transaction (so it commits with the change it
    records). Locks the head row first: concurrent writers queue here."""
    # The first statement writes: SQLite takes its write lock now (waiting on busy_timeout)
    # and PostgreSQL locks the head row until commit.
    seq, prev = conn.execute(
        update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq + 1)
        .returning(audit_head.c.seq, audit_head.c.hash)
    ).one()
    at = datetime.now(timezone.utc)
    text = canonical_json(details or {})
    digest = entry_hash(prev, seq, at, actor, action, target, text)
    conn.execute(insert(audit_log).values(
        seq=seq, at=at, actor=actor, action=action, target=target, details=text, prev_hash=prev, hash=digest,
    ))
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(hash=digest))
    return AuditEntry(seq, at, actor, action, target, details or {}, prev, digest)


def record_audit(store, actor: str, action: str, target: str | None = None, details: dict | None = None) -> AuditEntry:
    """Append one admin action in its own transaction. `store`: a StateStore or an Engine.
    Details name what changed (ids, counts, hashes), never element values."""
    with _engine(store).begin() as conn:
        return append(conn, actor, action, target, details)


def record_routes(store, routes: Sequence[dict], *, actor: str, batch_id: int | None = None, run_id: str | None = None) -> AuditEntry | None:
    """Record where instances went: rows with ledger_id, study_uid, sop_uid, destination,
    location, content_sha256. One chain entry covers the group by its digest."""
    if not routes:
        return None
    with _engine(store).begin() as conn:
        return append_routes(conn, routes, actor=actor, batch_id=batch_id, run_id=run_id)


def append_routes(conn, routes: Sequence[dict], *, actor: str, batch_id: int | None = None, run_id: str | None = None,
                  target: str | None = None) -> AuditEntry:
    """`record_routes` inside the caller's transaction (a delivery records its outcomes and
    their routes together). `batch_id` may also be given per route."""
    target = target or (f"batch:{batch_id}" if batch_id is not None else None)
    entry = append(conn, actor, "instances.routed", target,
                   {"batch_id": batch_id, "run_id": run_id, "routes": len(routes), "digest": routes_digest(routes)})
    conn.execute(insert(instance_routes), [
        {**{k: r.get(k) for k in ROUTE_FIELDS}, "audit_seq": entry.seq, "routed_at": entry.at,
         "batch_id": r.get("batch_id", batch_id), "run_id": run_id}
        for r in routes
    ])
    return entry


def record_config(store, actor: str, path: str, text: str) -> AuditEntry | None:
    """Record a configuration load when the file's content differs from the last one recorded
    for that path (`config.loaded` the first time, `config.changed` after); None if unchanged."""
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    with _engine(store).begin() as conn:
        last = conn.execute(
            select(audit_log.c.details).where(audit_log.c.action.in_(("config.loaded", "config.changed")),
                                              audit_log.c.target == path)
            .order_by(audit_log.c.seq.desc()).limit(1)
        ).scalar()
        previous = json.loads(last)["sha256"] if last else None
        if previous == sha:
            return None
        action = "config.loaded" if previous is None else "config.changed"
        return append(conn, actor, action, path, {"sha256": sha, "previous_sha256": previous, "bytes": len(text)})


def record_config_file(store, actor: str, path) -> AuditEntry | None:
    """`record_config` for a file on disk (the path is recorded resolved)."""
    path = Path(path).resolve()
    return record_config(store, actor, str(path), path.read_text(encoding="utf-8"))


def entries(store, *, after: int = 0, limit: int = 100, action: str | None = None, target: str | None = None) -> list[AuditEntry]:
    query = select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq).limit(limit)
    if action:
        query = query.where(audit_log.c.action == action)
    if target:
        query = query.where(audit_log.c.target == target)
    with _engine(store).connect() as conn:
        return [_entry(r) for r in conn.execute(query)]


def routes_of(store, sop_uid: str) -> list[dict]:
    """Every recorded copy of one SOP Instance: destination, location, content hash, time."""
    query = select(instance_routes).where(instance_routes.c.sop_uid == sop_uid).order_by(instance_routes.c.id)
    with _engine(store).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def verify(store, *, expect: str | None = None, chunk: int = 5000) -> Verification:
    """Walk the chain: consecutive sequence numbers from 1, each hash recomputed from its row
    and the previous hash, route groups against their digests, and the head against the last
    row. `expect` ("SEQ:HASH", a head printed earlier and kept elsewhere) must still be in it."""
    engine = _engine(store)
    expected_seq, _, expected_hash = (expect or "").partition(":")
    report = Verification()
    prev_seq, prev_hash = 0, GENESIS
    with engine.connect() as conn:
        head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one()
        while True:
            rows = conn.execute(select(audit_log).where(audit_log.c.seq > prev_seq).order_by(audit_log.c.seq).limit(chunk)).all()
            if not rows:
                break
            for r in rows:
                report.entries += 1
                if r.seq != prev_seq + 1:
                    report.problems.append(f"entries {prev_seq + 1}..{r.seq - 1} are missing (deleted)")
                if r.prev_hash != prev_hash:
                    report.problems.append(f"entry {r.seq}: prev_hash does not match the hash of the entry before it")
                if entry_hash(r.prev_hash, r.seq, _aware(r.at), r.actor, r.action, r.target, r.details) != r.hash:
                    report.problems.append(f"entry {r.seq}: content does not match its hash (altered)")
                if r.action == "instances.routed":
                    _check_routes(conn, r, report)
                if expect and str(r.seq) == expected_seq and r.hash != expected_hash:
                    report.problems.append(f"entry {r.seq}: hash differs from the expected head {expect}")
                prev_seq, prev_hash = r.seq, r.hash
    report.head_seq, report.head_hash = head.seq, head.hash
    if expect and (not expected_seq.isdigit() or int(expected_seq) > prev_seq):
        report.problems.append(f"the expected head {expect} is not in the log (rewritten or truncated)")
    if (head.seq, head.hash) != (prev_seq, prev_hash):
        report.problems.append(f"head says entry {head.seq} is last, the log ends at {prev_seq} (entries deleted or head altered)")
    return report


def _check_routes(conn, row, report: Verification) -> None:
    try:
        expected = json.loads(row.details)
    except ValueError:
        return  # the hash check has already reported an unreadable entry
    routes = [dict(r._mapping) for r in conn.execute(select(instance_routes).where(instance_routes.c.audit_seq == row.seq))]
    if len(routes) != expected.get("routes") or routes_digest(routes) != expected.get("digest"):
        report.problems.append(f"entry {row.seq}: its instance_routes rows were altered, added or deleted")


def _engine(store):
    return getattr(store, "engine", store)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _iso(value: datetime) -> str:
    return _aware(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _entry(r) -> AuditEntry:
    return AuditEntry(r.seq, _aware(r.at), r.actor, r.action, r.target, json.loads(r.details), r.prev_hash, r.hash)
