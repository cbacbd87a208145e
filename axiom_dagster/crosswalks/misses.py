"""Lookup misses: keys a crosswalk did not have and values the AI step could not standardize.

One row per (kind, name, key) in the state store table `lookup_misses`, with a count and
when it was first and last seen; the missing-keys report asset exports it for operators.
The key is stored (the operator needs it to fix the table) but never logged.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, UniqueConstraint, select, update

metadata = MetaData()

lookup_misses = Table(
    "lookup_misses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # crosswalk | ai
    Column("name", String(128), nullable=False),  # crosswalk name, or ai attribute/vocabulary
    Column("key_text", String(1024), nullable=False),  # key values joined by " | "
    Column("reason", String(256), nullable=False),
    Column("count", Integer, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("last_run_id", String(64)),
    UniqueConstraint("kind", "name", "key_text", name="uq_lookup_misses_key"),
)

KEY_SEPARATOR = " | "


def key_text(key: Iterable[object]) -> str:
    return KEY_SEPARATOR.join("" if v is None else str(v) for v in key)[:1024]


def record_misses(engine, misses: Iterable[tuple[str, str, str, str]], run_id: str | None) -> int:
    """Add (kind, name, key_text, reason) occurrences; returns the number of distinct keys."""
    counts = Counter(misses)
    if not counts:
        return 0
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        for (kind, name, key, reason), n in counts.items():
            t = lookup_misses
            found = conn.execute(
                select(t.c.id).where(t.c.kind == kind, t.c.name == name, t.c.key_text == key)
            ).first()
            if found:
                conn.execute(update(t).where(t.c.id == found[0]).values(
                    count=t.c.count + n, last_seen=now, last_run_id=run_id, reason=reason))
            else:
                conn.execute(t.insert().values(kind=kind, name=name, key_text=key, reason=reason, count=n,
                                               first_seen=now, last_seen=now, last_run_id=run_id))
    return len(counts)


def open_misses(engine, kind: str | None = None) -> list[dict]:
    t = lookup_misses
    stmt = select(t).order_by(t.c.kind, t.c.name, t.c.key_text)
    if kind:
        stmt = stmt.where(t.c.kind == kind)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]
