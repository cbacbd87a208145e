"""A source that caps query results (Orthanc's LimitFindResults for C-FIND): a day with more
studies than the cap is split by modality, and a modality still capped by StudyTime ranges,
so every study of the day is found and retrieved once."""
from collections import Counter
from datetime import date

from axiom_dagster.config.sources import BackfillConfig
from axiom_dagster.sources.backfill import backfill_day, find_day
from axiom_dagster.sources.dimse import DimseStudySource
from axiom_dagster.store.state import StateStore
from tests.helpers import free_port, make_config
from tests.sources.support import dimse_source, ledger_sops, load_archive, zone_for

CAP = 3


class CountingSource:
    """The DIMSE source, counting the C-FIND queries and their keys."""

    def __init__(self, source):
        self._source = source
        self.queries: list[dict] = []

    def __getattr__(self, name):
        return getattr(self._source, name)

    def find_studies(self, first, last, **kw):
        self.queries.append(dict(kw.get("extra") or {}))
        return self._source.find_studies(first, last, **kw)


def test_capped_day_is_split_by_modality_and_time(tmp_path, orthanc):
    orthanc.modalities = {"AXIOM": free_port()}
    orthanc.extra = {"LimitFindResults": CAP}
    orthanc.restart()
    archive = load_archive(orthanc, tmp_path / "archive", studies=12, series=1, instances=2, days=1, seed=8)
    day = date(2024, 1, 1)
    assert {a["date"] for a in archive.values()} == {"20240101"}
    source = CountingSource(DimseStudySource(dimse_source(orthanc)))
    assert len(source.find_studies(day, day).studies) == CAP  # the cap is real: one query sees 3 of 12

    settings = BackfillConfig(max_results_per_query=CAP, split_modalities=["CT", "MR", "CR", "US", "DX"])
    found = find_day(source, day, settings)
    assert {s.study_uid for s in found} == set(archive)
    keys = [q for q in source.queries[1:]]
    assert {"Modality": "CT"} in keys and any("StudyTime" in q for q in keys), keys

    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    store = StateStore(config.state_store_url)
    store.migrate()
    result = backfill_day(source, zone_for(config, store), day, settings, run_id="capped")
    assert (result.found, result.fetched, result.failed) == (12, 12, 0), result.error
    sops = ledger_sops(store)
    assert Counter(sops).most_common(1)[0][1] == 1 and set(sops) == {s for a in archive.values() for s in a["sops"]}


def test_without_splitting_the_cap_would_hide_studies(tmp_path, orthanc):
    """The same cap with a configuration that claims a larger one finds only what one query
    returns: the split is what finds the rest."""
    orthanc.modalities = {"AXIOM": free_port()}
    orthanc.extra = {"LimitFindResults": CAP}
    orthanc.restart()
    load_archive(orthanc, tmp_path / "archive", studies=6, series=1, instances=1, days=1, seed=9)
    day = date(2024, 1, 1)
    source = DimseStudySource(dimse_source(orthanc))
    assert len(find_day(source, day, BackfillConfig(max_results_per_query=100))) == CAP
    assert len(find_day(source, day, BackfillConfig(max_results_per_query=CAP))) == 6
