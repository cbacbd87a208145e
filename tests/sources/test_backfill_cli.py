"""`axiom sources list|test` and `axiom backfill` against Orthanc: connectivity checks, a dry
run, a backfill killed midway (SIGKILL) and re-run that completes without duplicates, the
pipeline processing every study once, and `axiom backfill status`."""
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from axiom_dagster.catalog.tables import connect
from axiom_dagster.cli import main
from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.store.state import StateStore
from tests.helpers import make_config, write_config_file
from tests.helpers import free_port
from tests.sources.support import dicomweb_source, dimse_source, ledger_sops, load_archive


def _config_file(tmp_path, orthanc, *sources):
    base = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    config = AxiomConfig(**{**base.model_dump(), "sources": [s.model_dump() for s in sources], "base_dir": tmp_path})
    return str(write_config_file(config, tmp_path / "axiom.yaml"))


def test_sources_list_and_test(tmp_path, orthanc, capsys):
    orthanc.modalities = {"AXIOM": free_port()}
    orthanc.restart()
    path = _config_file(tmp_path, orthanc, dicomweb_source(orthanc), dimse_source(orthanc))
    assert main(["--config", path, "sources", "list"]) == 0
    out = capsys.readouterr().out
    assert "orthanc-web\tdicomweb" in out and "orthanc-dimse\tdimse\tORTHANC@127.0.0.1" in out
    assert main(["--config", path, "sources", "test", "orthanc-web"]) == 0
    assert "QIDO-RS ok" in capsys.readouterr().out
    assert main(["sources", "test", "orthanc-dimse", "--config", path]) == 0
    assert "C-ECHO ok" in capsys.readouterr().out
    assert main(["--config", path, "sources", "test", "nope"]) == 2
    orthanc.stop()
    assert main(["--config", path, "sources", "test", "orthanc-dimse"]) == 1
    assert "FAILED: association with ORTHANC" in capsys.readouterr().err


def test_backfill_killed_midway_then_rerun_completes_without_duplicates(tmp_path, orthanc, capsys, monkeypatch):
    archive = load_archive(orthanc, tmp_path / "a", studies=10, series=2, instances=15, days=3)
    total = sum(len(a["sops"]) for a in archive.values())
    spec = dicomweb_source(orthanc, backfill={"concurrency": 1})
    path = _config_file(tmp_path, orthanc, spec)
    monkeypatch.setenv("AXIOM_CONFIG", path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    (tmp_path / "dh").mkdir()
    args = ["--config", path, "backfill", "orthanc-web", "--from", "2024-01-01", "--to", "2024-01-05"]

    assert main([*args, "--dry-run", "--no-progress"]) == 0
    assert "10 studies found, would fetch 10" in capsys.readouterr().out

    proc = subprocess.Popen([sys.executable, "-m", "axiom_dagster.cli", *args, "--no-pipeline", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, TCP_NODELAY="1"))
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    deadline = time.monotonic() + 60
    landed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            landed = len(ledger_sops(store))
        except Exception:  # schema not created yet
            landed = 0
        if landed >= 60:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert 0 < len(ledger_sops(store)) < total, "the backfill was not killed midway"

    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "pipeline runs" in out
    sops = ledger_sops(store)
    assert len(sops) == total and Counter(sops).most_common(1)[0][1] == 1
    rows = connect(str(tmp_path / "catalog")).sql("SELECT count(*), count(DISTINCT sop_instance_uid) FROM instances").fetchall()[0]
    assert rows == (total, total)
    assert store.study_counts() == {"done": 10}

    assert main([*args, "--no-progress"]) == 0  # nothing left to do
    assert "fetched 0, 10 already complete" in capsys.readouterr().out
    assert main(["--config", path, "backfill", "status"]) == 0
    assert "orthanc-web\tdone\t10 studies" in capsys.readouterr().out
