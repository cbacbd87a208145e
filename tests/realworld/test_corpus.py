"""The real-world corpus through all three ingest paths and the pipeline: every input lands
or is rejected with a reason; every landed arrival is catalogued, quarantined with a reason,
superseded or a duplicate; no batch fails; no log line, reason, STOW-RS response or C-STORE
comment carries a test PHI value."""
from __future__ import annotations

import logging
import os

import pytest
from pydicom import dcmread

from axiom_dagster.catalog.tables import connect
from axiom_dagster.demo import run_pending
from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.store.apikeys import create_key
from tests.realtime.support import InProcessService, make_config
from tests.helpers import free_port
from tests.realworld.corpus import build_corpus, send_cstore, send_stow, split
from tests.realworld.damage import PHI_VALUES


def no_phi(text: str) -> bool:
    return not any(v in text for v in PHI_VALUES)


@pytest.fixture
def service(tmp_path, monkeypatch):
    config_file, config = make_config(
        tmp_path, listeners=[{"name": "modalities", "ae_title": "AXIOM", "port": free_port()}],
        pipeline={"quiet_period_seconds": 0, "workers": 1},  # in process: caplog sees every record
        catalog={"path": str(tmp_path / "catalog")},
        destinations=[{"name": "archive", "type": "filesystem", "path": str(tmp_path / "routed")}],
    )
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    svc = InProcessService(config)
    svc.config_file = str(config_file)
    yield svc
    svc.stop()


def test_corpus_through_land_cstore_stow_and_pipeline(service, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    corpus = build_corpus(tmp_path / "corpus", damaged=150)
    to_land, to_cstore, to_stow = split(corpus.inputs, 3)

    report = service.service.zone.import_files(to_land, ArrivalMeta(source="import"))
    assert report.landed + len(report.rejected) == len(to_land)
    assert all(reason for _, reason in report.rejected)

    cstore = send_cstore(service.port("modalities"), to_cstore)
    assert len(cstore) >= len(to_cstore) // 2
    assert all(status == 0 or comment for status, comment in cstore.values())

    key = create_key(service.store.engine, "corpus", "admin")[1]
    stow = send_stow(service.base_url, key, to_stow)

    runs, _ = run_pending(service.config_file)
    assert runs >= 1
    store = service.store
    summary = store.status_summary()
    assert set(summary["batches"]) == {"done"}, summary  # no batch failed because of one file

    # Every landed arrival is accounted for.
    ledger = store.ledger_after(0, 100_000)
    catalogued = {r[0] for r in connect(service.config.catalog_path).execute("SELECT ledger_id FROM instances_all").fetchall()}
    failures = store.exceptions()
    quarantined = {e["ledger_id"] for e in failures if e["ledger_id"]}
    set_aside = {d["ledger_id"] for d in store.arrival_decisions() if d["decision"] in ("superseded", "duplicate")}
    lost = [r.id for r in ledger if r.id not in catalogued | quarantined | set_aside]
    assert lost == []
    assert [e["reason"] for e in failures if not (e["reason"] and no_phi(e["reason"]))] == []

    # The valid objects that came in (SR, ECG, RT, KOS, PR, PDF, pixel-stripped, synthetic) are catalogued.
    catalog_sops = {r[0] for r in connect(service.config.catalog_path).execute("SELECT sop_instance_uid FROM instances").fetchall()}
    for path in corpus.built:
        assert str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) in catalog_sops, path.name

    # No PHI anywhere a user or operator reads.
    assert all(no_phi(r["text"]) for r in stow)
    assert all(no_phi(comment) for _, comment in cstore.values())
    leaks = [r.getMessage() for r in caplog.records if not no_phi(r.getMessage())]
    assert leaks == []
    assert len(corpus.damaged) == 150 and os.path.isdir(service.config.quarantine_path)
