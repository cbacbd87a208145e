"""Backfill assets: a StudyDate day range materialized in runs of several days retrieves every
study exactly once, records per-day metadata as one materialization per partition, and a
re-run fetches nothing again. Against Orthanc (DICOMweb) and a filesystem archive."""
from collections import Counter
from datetime import date

from dagster import AssetKey, DagsterInstance, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.backfill import source_definitions
from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.config.sources import FilesystemSource
from axiom_dagster.sources import progress
from resources import AxiomResource, SourceResource
from tests.helpers import make_config, write_config_file
from tests.sources.support import describe, dicomweb_source, ledger_sops, load_archive
from axiom_dagster.synth import SynthSpec, generate_archive


def _defs(tmp_path, spec):
    base = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    config = AxiomConfig(**{**base.model_dump(), "sources": [spec.model_dump()], "base_dir": tmp_path})
    path = str(write_config_file(config, tmp_path / "axiom.yaml"))
    return source_definitions(config, path, with_axiom=True), path


def _materialize_range(defs, asset_name, first, last, instance):
    asset = defs.resolve_assets_def(asset_name)
    return materialize(
        [asset], instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
    )


def _days(archive):
    dates = sorted({a["date"] for a in archive.values()})
    return [f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in dates]


def test_dicomweb_backfill_range_retrieves_each_study_once(tmp_path, orthanc):
    archive = load_archive(orthanc, tmp_path / "a", studies=6, instances=2, days=4)
    spec = dicomweb_source(orthanc, backfill={"start_date": "2024-01-01", "days_per_run": 3})
    defs, path = _defs(tmp_path, spec)
    days = _days(archive)
    instance = DagsterInstance.ephemeral()
    assert _materialize_range(defs, "orthanc_web_archive", days[0], days[-1], instance).success

    store = AxiomResource(config_path=path).store
    sops = ledger_sops(store)
    assert Counter(sops).most_common(1)[0][1] == 1
    assert set(sops) == {s for a in archive.values() for s in a["sops"]}

    events = instance.fetch_materializations(AssetKey("orthanc_web_archive"), limit=100).records
    per_day = {e.partition_key: e.asset_materialization.metadata for e in events}
    assert set(per_day) >= set(days)
    assert sum(per_day[d]["found"].value for d in days) == 6
    assert sum(per_day[d]["fetched"].value for d in days) == 6
    assert all(per_day[d]["failed"].value == 0 and per_day[d]["bytes"].value > 0 for d in days)

    # Resumable: the same range again finds everything complete and fetches nothing.
    again = DagsterInstance.ephemeral()
    assert _materialize_range(defs, "orthanc_web_archive", days[0], days[-1], again).success
    rerun = {e.partition_key: e.asset_materialization.metadata for e in again.fetch_materializations(AssetKey("orthanc_web_archive"), limit=100).records}
    assert sum(rerun[d]["skipped"].value for d in days) == 6 and sum(rerun[d]["fetched"].value for d in days) == 0
    assert len(ledger_sops(store)) == 12
    assert {r["status"]: r["studies"] for r in progress.summary(store, "orthanc-web")} == {"done": 6}


def test_filesystem_archive_backfill(tmp_path):
    paths = generate_archive(tmp_path / "old", SynthSpec(4, 2, 2, rows=16, columns=16, seed=3, days=3))
    (tmp_path / "old" / "notes.txt").write_text("not DICOM")
    archive = describe(paths)
    spec = FilesystemSource(name="old-archive", path=tmp_path / "old", backfill={"start_date": "2024-01-01"})
    defs, path = _defs(tmp_path, spec)
    days = _days(archive)
    assert _materialize_range(defs, "old_archive_archive", days[0], days[-1], DagsterInstance.ephemeral()).success
    store = AxiomResource(config_path=path).store
    assert sorted(ledger_sops(store)) == sorted(s for a in archive.values() for s in a["sops"])
    # The files stay where they are; landed copies are byte-identical.
    with store.engine.connect() as conn:
        landed = {p.split("/")[-1] for p in conn.exec_driver_sql("SELECT path FROM ledger").scalars()}
    assert len(landed) == 16 and all((tmp_path / "old").rglob("*.dcm"))
