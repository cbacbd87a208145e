"""`axiom backfill` with a running dagster-daemon launches a real Dagster asset backfill of the
source's day partitions (not an in-process run): the daemon runs it in runs of several days,
every study lands once, every day's partition is materialized, and the backfill completes.
Without a daemon the same command runs in process."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from dagster import AssetKey, DagsterInstance

from assets.backfill_launch import daemon_running
from axiom_dagster.cli import main
from axiom_dagster.store.state import StateStore
from tests.sources.support import dicomweb_source, ledger_sops, load_archive
from tests.sources.test_backfill_cli import _config_file

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


def _start_daemon(tmp_path: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "daemon.log").open("wb"),
                            start_new_session=True)


def _stop(daemon: subprocess.Popen) -> None:
    """The daemon and what it started (code server, run workers): its whole session."""
    try:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()


def test_backfill_with_a_daemon_launches_a_dagster_backfill(tmp_path, orthanc, monkeypatch, capsys):
    archive = load_archive(orthanc, tmp_path / "a", studies=5, series=1, instances=2, days=3)
    spec = dicomweb_source(orthanc, poll={"enabled": False}, backfill={"start_date": "2024-01-01", "days_per_run": 3})
    path = _config_file(tmp_path, orthanc, spec)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    for key, value in {"DAGSTER_HOME": str(home), "AXIOM_CONFIG": path, "TCP_NODELAY": "1"}.items():
        monkeypatch.setenv(key, value)
    args = ["--config", path, "backfill", "orthanc-web", "--from", "2024-01-01", "--to", "2024-01-05", "--no-progress"]

    daemon = _start_daemon(tmp_path, dict(os.environ))
    try:
        with DagsterInstance.get() as instance:
            deadline = time.monotonic() + 120
            while not daemon_running(instance):
                assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the daemon's backfill loop never reported"
                time.sleep(0.5)
            from axiom_dagster import sources_cli

            sources_cli._instance.cache_clear()
            code = main([*args, "--wait"])
            out = capsys.readouterr().out
            assert "launched Dagster backfill" in out, out
            assert code == 0, out + (tmp_path / "daemon.log").read_text()[-3000:]

            backfills = instance.get_backfills()
            assert len(backfills) == 1 and backfills[0].status.value == "COMPLETED_SUCCESS"
            assert backfills[0].tags["axiom/source"] == "orthanc-web"
            assert backfills[0].tags["axiom/node"] == "orthanc-web"  # the per-node run limit
            runs = instance.get_runs()
            backfill_runs = [r for r in runs if r.tags.get("dagster/backfill") == backfills[0].backfill_id]
            # Five days at three per run (BackfillPolicy.multi_run): two runs, none in this process.
            assert len(backfill_runs) == 2, [(r.run_id, r.tags) for r in runs]
            days = {e.partition_key for e in instance.fetch_materializations(AssetKey("orthanc_web_archive"), limit=100).records}
            assert days == {f"2024-01-0{d}" for d in range(1, 6)}
    finally:
        _stop(daemon)
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    sops = ledger_sops(store)
    assert Counter(sops).most_common(1)[0][1] == 1
    assert set(sops) == {s for a in archive.values() for s in a["sops"]}

    # An instance no daemon serves: the same command (a re-run) runs in process and finds
    # everything done.
    from axiom_dagster import sources_cli

    (tmp_path / "no_daemon").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "no_daemon"))
    sources_cli._instance.cache_clear()
    assert main(args) == 0
    assert "fetched 0, 5 already complete" in capsys.readouterr().out
