"""The persistent AI answer cache and usage counters (state store tables `ai_cache`, `ai_usage`).

An entry is keyed by provider, model, prompt version and input value, so each distinct value
is asked once per prompt; a new prompt version (changed vocabulary, attribute or
instructions) makes new entries. A reviewer's correction (`reviewed_value`) wins over the
model's answer and applies to the same vocabulary and input under every prompt version.
"""
from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import (
    Column, DateTime, Integer, MetaData, String, Table, UniqueConstraint, and_, select, update,
)

metadata = MetaData()

ai_cache = Table(
    "ai_cache",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("provider", String(32), nullable=False),
    Column("model", String(128), nullable=False),
    Column("prompt_version", String(32), nullable=False),
    Column("vocabulary", String(128), nullable=False),
    Column("input_value", String(1024), nullable=False),
    Column("output_value", String(1024)),  # null: the model chose no term
    Column("reviewed_value", String(1024)),
    Column("reviewed_by", String(64)),
    Column("reviewed_at", DateTime(timezone=True)),
    Column("tokens", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("provider", "model", "prompt_version", "input_value", name="uq_ai_cache_key"),
)

ai_usage = Table(
    "ai_usage",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("day", String(10), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("calls", Integer, nullable=False),
    Column("tokens", Integer, nullable=False),
    UniqueConstraint("day", "provider", name="uq_ai_usage_day"),
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class AICache:
    def __init__(self, engine) -> None:
        self.engine = engine

    def answers(self, provider: str, model: str, prompt_version: str, vocabulary: str) -> dict[str, str | None]:
        """input value -> standardized value, corrections applied."""
        t = ai_cache
        out: dict[str, str | None] = {}
        with self.engine.connect() as conn:
            for inp, value in conn.execute(select(t.c.input_value, t.c.output_value).where(
                t.c.provider == provider, t.c.model == model, t.c.prompt_version == prompt_version
            )):
                out[inp] = value
            for inp, value in conn.execute(
                select(t.c.input_value, t.c.reviewed_value)
                .where(t.c.vocabulary == vocabulary, t.c.reviewed_value.is_not(None))
                .order_by(t.c.reviewed_at)
            ):
                out[inp] = value
        return out

    def put(self, provider: str, model: str, prompt_version: str, vocabulary: str,
            answers: dict[str, str | None], tokens_each: int = 0) -> None:
        if not answers:
            return
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(ai_cache.insert(), [
                dict(provider=provider, model=model, prompt_version=prompt_version, vocabulary=vocabulary,
                     input_value=inp, output_value=out, tokens=tokens_each, created_at=now)
                for inp, out in answers.items()
            ])

    def entries(self, vocabulary: str | None = None, unreviewed: bool = False) -> list[dict]:
        t = ai_cache
        stmt = select(t).order_by(t.c.vocabulary, t.c.input_value, t.c.id)
        if vocabulary:
            stmt = stmt.where(t.c.vocabulary == vocabulary)
        if unreviewed:
            stmt = stmt.where(t.c.reviewed_value.is_(None))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def review(self, entry_id: int, value: str, reviewer: str) -> bool:
        """Set a correction; it wins over the model for this vocabulary and input."""
        with self.engine.begin() as conn:
            done = conn.execute(update(ai_cache).where(ai_cache.c.id == entry_id).values(
                reviewed_value=value, reviewed_by=reviewer[:64], reviewed_at=_now()))
        return done.rowcount == 1

    def usage(self, day: date) -> tuple[int, int]:
        """(calls, tokens) across providers on a UTC day."""
        t = ai_usage
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.calls, t.c.tokens).where(t.c.day == day.isoformat())).all()
        return sum(r[0] for r in rows), sum(r[1] for r in rows)

    def add_usage(self, day: date, provider: str, calls: int, tokens: int) -> None:
        if not calls:
            return
        t = ai_usage
        with self.engine.begin() as conn:
            cond = and_(t.c.day == day.isoformat(), t.c.provider == provider)
            if conn.execute(select(t.c.id).where(cond)).first():
                conn.execute(update(t).where(cond).values(calls=t.c.calls + calls, tokens=t.c.tokens + tokens))
            else:
                conn.execute(t.insert().values(day=day.isoformat(), provider=provider, calls=calls, tokens=tokens))

