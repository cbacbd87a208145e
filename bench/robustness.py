"""Robustness target run: real-world files and >= 1,000 seeded damaged copies through the three
ingest paths (`axiom land`, C-STORE, STOW-RS), then the headless pipeline (landing sensor +
study pipeline job). Prints what landed, what was refused, what the pipeline did, and the
three targets: 0 instances lost, 0 failed batches, 0 log lines with a test PHI value.

    python bench/robustness.py [--damaged 1300]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.realworld.corpus import build_corpus, send_cstore, send_stow, split  # noqa: E402
from tests.realworld.damage import PHI_VALUES  # noqa: E402


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--damaged", type=int, default=1300)
    args = parser.parse_args()
    from axiom_dagster.catalog.tables import connect
    from axiom_dagster.demo import run_pending
    from axiom_dagster.ingest.arrival import ArrivalMeta
    from axiom_dagster.ingest.redaction import install_log_redaction
    from axiom_dagster.store.apikeys import create_key
    from tests.realtime.support import InProcessService, free_port, make_config

    install_log_redaction()
    capture = Capture()
    logging.getLogger().addHandler(capture)
    logging.getLogger().setLevel(logging.DEBUG)
    with tempfile.TemporaryDirectory(prefix="axiom-robust-") as tmp:
        tmp = Path(tmp)
        os.environ["DAGSTER_HOME"] = str(tmp / "dagster_home")
        (tmp / "dagster_home").mkdir()
        config_file, config = make_config(
            tmp, listeners=[{"name": "modalities", "ae_title": "AXIOM", "port": free_port()}],
            pipeline={"quiet_period_seconds": 0, "workers": 1}, catalog={"path": str(tmp / "catalog")},
            destinations=[{"name": "archive", "type": "filesystem", "path": str(tmp / "routed")}],
        )
        corpus = build_corpus(tmp / "corpus", damaged=args.damaged)
        to_land, to_cstore, to_stow = split(corpus.inputs, 3)
        print(f"corpus: {len(corpus.real)} package files, {len(corpus.built)} built objects, "
              f"{len(corpus.damaged)} damaged copies; per path {len(to_land)} / {len(to_cstore)} / {len(to_stow)}")
        svc = InProcessService(config)
        started = time.perf_counter()
        try:
            report = svc.service.zone.import_files(to_land, ArrivalMeta(source="import"))
            cstore = send_cstore(svc.port("modalities"), to_cstore)
            key = create_key(svc.store.engine, "robustness", "admin")[1]
            stow = send_stow(svc.base_url, key, to_stow)
            ingest_seconds = time.perf_counter() - started
            runs, _ = run_pending(str(config_file))
            store = svc.store
            ledger = store.ledger_after(0, 1_000_000)
            con = connect(config.catalog_path)
            catalogued = {r[0] for r in con.execute("SELECT ledger_id FROM instances_all").fetchall()}
            failures = store.exceptions()
            quarantined = {e["ledger_id"] for e in failures if e["ledger_id"]}
            decisions = store.arrival_decisions()
            set_aside = {d["ledger_id"] for d in decisions if d["decision"] in ("superseded", "duplicate")}
            lost = [r.id for r in ledger if r.id not in catalogued | quarantined | set_aside]
            batches = store.status_summary()["batches"]
            texts = [e["reason"] for e in failures] + [r["text"] for r in stow] + [c for _, c in cstore.values()]
            phi_lines = [line for line in capture.lines + texts if any(v in line for v in PHI_VALUES)]
        finally:
            svc.stop()
        stow_stored = sum(r["stored"] for r in stow)
        stow_failed = sum(len(r["failed"]) for r in stow)
        damaged = {p for p, _ in corpus.damaged}
        n_damaged = (sum(p in damaged for p in to_land), sum(p in damaged for p in cstore), sum(p in damaged for p in to_stow))
        print(f"damaged inputs delivered: land {n_damaged[0]}, C-STORE {n_damaged[1]}, STOW-RS {n_damaged[2]}: "
              f"{sum(n_damaged)} in all")
        print(f"axiom land: {report.landed} landed, {len(report.rejected)} rejected with a reason")
        print(f"C-STORE: {len(cstore)} sent, {sum(1 for s, _ in cstore.values() if s == 0)} Success, "
              f"{sum(1 for s, _ in cstore.values() if s != 0)} refused with a failure status "
              f"({len(to_cstore) - len(cstore)} not sendable by the client: no File Meta Information)")
        comments = {}
        for status, comment in cstore.values():
            if status:
                key = f"0x{status:04X} {comment.split(':')[0][:40]}"
                comments[key] = comments.get(key, 0) + 1
        print(f"   C-STORE refusals: {dict(sorted(comments.items(), key=lambda kv: -kv[1]))}")
        print(f"STOW-RS: {stow_stored} stored, {stow_failed} in FailedSOPSequence")
        print(f"ingest {ingest_seconds:.1f}s; pipeline: {runs} runs, batches {batches}")
        print(f"ledger {len(ledger)} arrivals: {len(catalogued)} catalogued, {len(quarantined)} quarantined, "
              f"{len(set_aside)} superseded/duplicate; exceptions by stage "
              f"{_by_stage(failures)}")
        print(f"TARGETS: lost {len(lost)}, failed batches {sum(n for s, n in batches.items() if s != 'done')}, "
              f"PHI lines {len(phi_lines)} (of {len(capture.lines)} log lines + {len(texts)} reasons/responses)")
        return 0 if not lost and set(batches) == {"done"} and not phi_lines else 1


def _by_stage(failures):
    out = {}
    for e in failures:
        out[e["stage"]] = out.get(e["stage"], 0) + 1
    return out


if __name__ == "__main__":
    sys.exit(main())
