"""The in-process backfill reports each finished day to the Dagster instance as it finishes
(a materialization of the source's archive partition); a day whose query failed is not done."""
from dagster import AssetKey, DagsterInstance

from assets.backfill import backfill_asset_name
from axiom_dagster import sources_cli
from axiom_dagster.sources.backfill import DayResult


def test_finished_days_are_recorded_as_they_finish_and_failed_queries_are_not(monkeypatch):
    instance = DagsterInstance.ephemeral()
    monkeypatch.setattr(sources_cli, "_instance", lambda: instance)
    key = AssetKey(backfill_asset_name("pacs"))
    results = [DayResult("2024-01-01", found=2, skipped=2), DayResult("2024-01-02", error="C-FIND failed")]
    recorded = sources_cli._record_finished_days("pacs", results, 0, dry_run=False)
    assert recorded == 2
    assert instance.get_materialized_partitions(key) == {"2024-01-01"}
    results.append(DayResult("2024-01-03", found=1, skipped=1))  # the retrieval thread goes on
    assert sources_cli._record_finished_days("pacs", results, recorded, dry_run=False) == 3
    assert instance.get_materialized_partitions(key) == {"2024-01-01", "2024-01-03"}
    events = instance.fetch_materializations(key, limit=10).records
    assert len(events) == 2  # each day once, not again with the later days
    assert sources_cli._record_finished_days("pacs", results, 3, dry_run=True) == 3
