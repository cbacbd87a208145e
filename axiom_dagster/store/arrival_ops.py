"""State store operations on the arrivals of one SOP Instance UID: which arrival won."""
from __future__ import annotations

from typing import Sequence

from sqlalchemy import Engine, select

from axiom_dagster.store.records import utcnow
from axiom_dagster.store.schema import arrival_decisions, ledger
from axiom_dagster.store.upsert import upsert_insert


class ArrivalDecisionOps:
    engine: Engine

    def earlier_winners(self, sop_uids: Sequence[str], batch_id: int) -> dict[str, tuple[int, str | None]]:
        """Per SOP Instance UID, the (ledger id, sha256) of its latest winning arrival in a
        batch other than `batch_id`."""
        out: dict[str, tuple[int, str | None]] = {}
        uids = list(set(sop_uids))
        with self.engine.connect() as conn:
            for i in range(0, len(uids), 500):
                query = (
                    select(arrival_decisions.c.sop_uid, ledger.c.id, ledger.c.sha256)
                    .join(ledger, ledger.c.id == arrival_decisions.c.ledger_id)
                    .where(
                        arrival_decisions.c.sop_uid.in_(uids[i:i + 500]),
                        arrival_decisions.c.decision == "winner",
                        arrival_decisions.c.batch_id != batch_id,
                    )
                    .order_by(ledger.c.id)
                )
                for sop, ledger_id, sha in conn.execute(query):
                    out[sop] = (ledger_id, sha)
        return out

    def record_arrival_decisions(self, rows: Sequence[dict]) -> None:
        """Upsert one decision per arrival (winner / superseded / duplicate / failed)."""
        if not rows:
            return
        stmt = upsert_insert(self.engine, arrival_decisions)
        stmt = stmt.on_conflict_do_update(
            index_elements=["ledger_id"],
            set_={c: stmt.excluded[c] for c in ("decision", "winner_ledger_id", "batch_id", "run_id", "decided_at")},
        )
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(stmt, [{**r, "decided_at": now} for r in rows])

    def arrival_decisions(self, sop_uid: str | None = None) -> list[dict]:
        query = select(arrival_decisions).order_by(arrival_decisions.c.ledger_id)
        if sop_uid:
            query = query.where(arrival_decisions.c.sop_uid == sop_uid)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
