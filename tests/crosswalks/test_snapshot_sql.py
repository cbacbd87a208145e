"""Crosswalk snapshots from real MariaDB and PostgreSQL tables: refresh, checks, promotion."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from axiom_dagster.config.crosswalks import CrosswalkSpec
from axiom_dagster.crosswalks.files import CrosswalkError
from axiom_dagster.crosswalks.lookup import open_crosswalk
from axiom_dagster.crosswalks.snapshot import SnapshotStore
from axiom_dagster.crosswalks.sources import CrosswalkSourceError
from tests.crosswalks.conftest import create_patients

ROWS = [(f"MRN{i:04d}", i % 3, f"R-{i:04d}") for i in range(100)]


def spec(url: str, **kw) -> CrosswalkSpec:
    source = {"type": "sql", "url": url, **({"query": kw.pop("query")} if "query" in kw else {"table": "patients"})}
    return CrosswalkSpec.model_validate({"source": source, "keys": ["mrn"], "values": ["research_id"], **kw})


def test_refresh_promotes_and_lookup_reads_the_snapshot(source_db_url, tmp_path):
    create_patients(source_db_url, ROWS)
    s = spec(source_db_url)
    result = SnapshotStore(tmp_path, "patients").refresh(s)
    assert result.promoted and result.rows == 100 and not result.failed_checks
    table = pq.read_table(SnapshotStore(tmp_path, "patients").current_file())
    assert table.column_names == ["mrn", "research_id"]
    index = open_crosswalk("patients", s, tmp_path, tmp_path).index(["mrn"])
    assert index.get(("MRN0042",)) == ("MRN0042", "R-0042")
    assert index.get(("MRN9999",)) is None


def test_drift_beyond_threshold_blocks_promotion(source_db_url, tmp_path):
    create_patients(source_db_url, ROWS)
    s = spec(source_db_url, max_row_drift=0.1)
    store = SnapshotStore(tmp_path, "patients")
    first = store.refresh(s)
    create_patients(source_db_url, ROWS[:50])  # half the table vanished upstream
    second = store.refresh(s)
    assert not second.promoted and second.failed_checks == ["row_count_drift"]
    assert store.current()["file"] == first.file  # the previous snapshot stays in use
    assert store.last_refresh()["promoted"] is False
    assert len(open_crosswalk("patients", s, tmp_path, tmp_path).index(["mrn"])) == 100
    create_patients(source_db_url, ROWS[:95])  # 5 % is within the threshold
    assert store.refresh(s).promoted and store.current()["rows"] == 95


def test_duplicate_and_null_keys_block_promotion(source_db_url, tmp_path):
    create_patients(source_db_url, ROWS[:10] + [("MRN0001", 9, "R-dup"), (None, 1, "R-null")])
    result = SnapshotStore(tmp_path, "patients").refresh(spec(source_db_url))
    assert not result.promoted
    assert set(result.failed_checks) == {"keys_unique", "keys_not_null"}
    assert SnapshotStore(tmp_path, "patients").current() is None
    with pytest.raises(CrosswalkError, match="no promoted snapshot"):
        open_crosswalk("patients", spec(source_db_url), tmp_path, tmp_path)


def test_query_source_with_two_key_columns(source_db_url, tmp_path):
    create_patients(source_db_url, ROWS)
    s = CrosswalkSpec.model_validate({
        "source": {"type": "sql", "url": source_db_url, "query": "SELECT mrn, site, arm FROM patients WHERE site > 0"},
        "keys": ["mrn", "site"], "values": ["arm"],
    })
    result = SnapshotStore(tmp_path, "arms").refresh(s)
    assert result.promoted and result.rows == len([r for r in ROWS if r[1] > 0])
    index = open_crosswalk("arms", s, tmp_path, tmp_path).index(["mrn", "site"])
    assert index.get(("MRN0001", "1")) == ("MRN0001", "1", "A1")  # integers arrive as text
    assert index.get(("MRN0001", "2")) is None


def test_live_lookup_queries_the_source(source_db_url, tmp_path):
    create_patients(source_db_url, ROWS)
    s = spec(source_db_url)
    SnapshotStore(tmp_path, "patients").refresh(s)
    engine = sa.create_engine(source_db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO patients (mrn, site, research_id, arm) VALUES ('NEW1', 1, 'R-NEW1', 'A1')")
    engine.dispose()
    cw = open_crosswalk("patients", s, tmp_path, tmp_path)
    assert cw.index(["mrn"]).get(("NEW1",)) is None
    assert cw.live(["mrn"], ("NEW1",)) == ("NEW1", "R-NEW1")
    assert cw.live(["mrn"], ("NOPE",)) is None
    q = spec(source_db_url, query="SELECT mrn, research_id FROM patients WHERE site >= 0")
    SnapshotStore(tmp_path, "q").refresh(q)
    assert open_crosswalk("q", q, tmp_path, tmp_path).live(["mrn"], ("NEW1",)) == ("NEW1", "R-NEW1")


def test_unreadable_source_names_the_crosswalk_not_the_password(tmp_path):
    s = spec("mysql+pymysql://root:s3cret@127.0.0.1:3306/axiom_no_such_db")
    with pytest.raises(CrosswalkSourceError, match="crosswalks.patients") as info:
        SnapshotStore(tmp_path, "patients").refresh(s)
    assert "s3cret" not in str(info.value)


def test_missing_configured_column_is_named(source_db_url, tmp_path):
    create_patients(source_db_url, ROWS[:3])
    s = CrosswalkSpec.model_validate({"source": {"type": "sql", "url": source_db_url, "table": "patients"},
                                      "keys": ["mrn"], "values": ["nope"]})
    with pytest.raises(CrosswalkSourceError, match=r"no column\(s\) \['nope'\]"):
        SnapshotStore(tmp_path, "patients").refresh(s)
