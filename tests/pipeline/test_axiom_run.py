"""`axiom run [--wait]`: what has landed is processed headless by the same sensor and job
the daemon runs."""
from axiom_dagster.catalog.tables import connect
from axiom_dagster.cli import main as axiom
from axiom_dagster.store.state import StateStore
from tests.helpers import make_config, small_archive, write_config_file


def test_axiom_run_wait_processes_everything_landed(tmp_path, monkeypatch, capsys):
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", quiet_period_seconds=0.5)
    config_file = str(write_config_file(config, tmp_path / "axiom.yaml"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    small_archive(tmp_path / "in", studies=3, series=1, instances=2)
    assert axiom(["land", str(tmp_path / "in"), "--config", config_file]) == 0
    assert axiom(["run", "--wait", "--poll-seconds", "0.2", "--config", config_file]) == 0
    assert "pipeline runs" in capsys.readouterr().out
    assert StateStore(config.state_store_url).study_counts() == {"done": 3}
    assert connect(config.catalog_path).execute("SELECT count(*) FROM instances").fetchone()[0] == 6
    # Nothing new: a second run requests nothing.
    assert axiom(["run", "--config", config_file]) == 0
    assert capsys.readouterr().out.startswith("0 pipeline runs")
