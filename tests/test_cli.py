"""The `axiom` commands a newcomer runs: synth, land, sql, migrate, demo."""
from axiom_dagster.cli import main

from tests.helpers import make_config, write_config_file


def test_synth_land_sql_and_demo(tmp_path, capsys, monkeypatch):
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    config_file = str(write_config_file(config, tmp_path / "axiom.yaml"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()

    assert main(["synth", str(tmp_path / "arch"), "--studies", "2", "--series", "1", "--instances", "3", "--rows", "16", "--columns", "16"]) == 0
    assert "wrote 6 instances (2 studies)" in capsys.readouterr().out
    (tmp_path / "arch" / "junk.bin").write_bytes(b"\x01\x02")
    assert main(["--config", config_file, "land", str(tmp_path / "arch")]) == 1
    out = capsys.readouterr().out
    assert "landed 6 instances" in out and "rejected" in out and "junk.bin" in out
    assert main(["migrate", "--config", config_file]) == 0
    assert "state store at revision 0" in capsys.readouterr().out

    # The demo lands its own archive, then drives the sensor and the job for everything waiting.
    assert main(["--config", config_file, "demo", "--studies", "2", "--series", "1", "--instances", "2"]) == 0
    out = capsys.readouterr().out
    assert "pipeline runs" in out and "study status: {'done': 4}" in out

    assert main(["--config", config_file, "sql", "SELECT count(*) AS n FROM instances"]) == 0
    assert "10" in capsys.readouterr().out  # 6 landed + 4 from the demo archive

    assert main(["status", "--config", config_file]) == 0
    out = capsys.readouterr().out
    assert "ledger: 10 instances" in out and "studies: done: 4" in out
    assert "deliveries: archive / confirmed: 10" in out and "open exceptions: landing: 1" in out
