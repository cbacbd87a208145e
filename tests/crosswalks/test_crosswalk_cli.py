"""`axiom crosswalk list|refresh|lookup` against a real MariaDB table, and the engine's
on-miss policies (live, quarantine, default) with the lookup misses they record."""
import yaml
from pydicom import Dataset

from axiom_dagster.cli import main as axiom_main
from axiom_dagster.config.models import load_config
from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.rules import compile_rules
from tests.crosswalks.conftest import create_patients
from tests.helpers import make_config

ROWS = [(f"MRN{i}", i % 2, f"R-{i}") for i in range(20)]


def config_file(tmp_path, url, on_miss="quarantine", **extra):
    data = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}").model_dump(mode="json", exclude_defaults=True)
    data["crosswalk_snapshots"] = "snapshots"
    data["crosswalks"] = {"pats": {"source": {"type": "sql", "url": url, "table": "patients"},
                                   "keys": ["mrn", "site"], "values": ["research_id"], "max_row_drift": 0.1}}
    action = {"action": "crosswalk", "crosswalk": "pats", "match": {"mrn": "PatientID", "site": "OtherPatientIDs"},
              "set": {"PatientID": "research_id"}, "on_miss": on_miss, **extra}
    data["rulesets"] = [{"name": "r", "rules": [{"name": "pseudonym", "actions": [action]}]}]
    data["default_destinations"] = ["*"]
    path = tmp_path / "axiom.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_list_refresh_lookup(tmp_path, mariadb_url, capsys):
    create_patients(mariadb_url, ROWS)
    cfg = str(config_file(tmp_path, mariadb_url))
    assert axiom_main(["--config", cfg, "crosswalk", "list"]) == 0
    assert "pats\tsql patients\tkeys mrn,site\tcron -\tno promoted snapshot" in capsys.readouterr().out
    assert axiom_main(["--config", cfg, "crosswalk", "refresh", "pats"]) == 0
    assert "pats: 20 rows promoted" in capsys.readouterr().out
    assert axiom_main(["--config", cfg, "crosswalk", "lookup", "pats", "MRN3", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == ["mrn\tMRN3", "site\t1", "research_id\tR-3"]
    assert axiom_main(["--config", cfg, "crosswalk", "lookup", "pats", "MRN3", "0"]) == 1
    assert axiom_main(["--config", cfg, "crosswalk", "lookup", "pats", "MRN3"]) == 1

    create_patients(mariadb_url, ROWS[:10])
    assert axiom_main(["--config", cfg, "crosswalk", "refresh", "pats"]) == 1
    captured = capsys.readouterr()
    assert "FAIL row_count_drift" in captured.out and "NOT promoted" in captured.err
    assert axiom_main(["--config", cfg, "crosswalk", "list"]) == 0
    out = capsys.readouterr().out
    assert "promoted 20 rows" in out and "NOT promoted (failed: row_count_drift)" in out
    assert axiom_main(["--config", cfg, "crosswalk", "refresh", "nope"]) == 1


def _instance(pid: str, site: str) -> Dataset:
    ds = Dataset()
    ds.PatientID, ds.OtherPatientIDs = pid, site
    return ds


def test_on_miss_live_default_and_quarantine_record_misses(tmp_path, mariadb_url):
    create_patients(mariadb_url, ROWS)
    assert axiom_main(["--config", str(config_file(tmp_path, mariadb_url)), "crosswalk", "refresh", "pats"]) == 0
    create_patients(mariadb_url, ROWS + [("LATE", 1, "R-LATE")])  # added after the snapshot
    meta, dests = ArrivalMeta(source="t"), ["archive"]

    live = compile_rules(load_config(config_file(tmp_path, mariadb_url, "live")), None, tmp_path)
    hit = live.morph(_instance("LATE", "1"), meta, dests)
    assert hit.copies[0].dataset.PatientID == "R-LATE"
    assert hit.lookup_misses == [("crosswalk", "pats", "LATE | 1", "not in snapshot; found by live query")]
    gone = live.morph(_instance("GHOST", "1"), meta, dests)
    assert gone.quarantine_reason == "crosswalk 'pats': no row matches columns ['mrn', 'site']"
    assert "GHOST" not in gone.quarantine_reason
    assert gone.lookup_misses == [("crosswalk", "pats", "GHOST | 1", "no row (on_miss live)")]

    default = compile_rules(load_config(config_file(tmp_path, mariadb_url, "default", default={"PatientID": "UNKNOWN"})), None, tmp_path)
    out = default.morph(_instance("LATE", "1"), meta, dests)
    assert out.copies[0].dataset.PatientID == "UNKNOWN" and len(out.lookup_misses) == 1
    found = default.morph(_instance("MRN4", "0"), meta, dests)
    assert found.copies[0].dataset.PatientID == "R-4" and found.lookup_misses == []
