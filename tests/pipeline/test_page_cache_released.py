"""After a batch, neither the landed files nor the folder copies stay in the page cache:
the pipeline read the one and synced the other (see ingest/page_cache)."""
from datetime import datetime, timezone
from pathlib import Path

from axiom_dagster.config.models import FilesystemDestination
from axiom_dagster.pipeline.batching import plan_tick
from axiom_dagster.pipeline.run import run_batch

from tests.helpers import land_folder, make_config, small_archive
from tests.page_cache_probe import needs_page_cache, resident_pages


def test_landed_files_and_folder_copies_are_released(tmp_path, store):
    needs_page_cache(tmp_path)
    config = make_config(tmp_path, store.url, workers=2)
    config.destinations = [FilesystemDestination(name="folder", path=tmp_path / "routed")]
    inputs = small_archive(tmp_path / "in", studies=2, series=2, instances=20)  # 80: both workers used
    assert land_folder(config, store, tmp_path / "in").landed == len(inputs)
    (batch,) = plan_tick(store, config.pipeline, 0, datetime.now(timezone.utc)).new_batches
    result = run_batch(config, store, batch.id, "run-1")
    assert result.failed == 0 and result.delivered == len(inputs)

    landed = [Path(r.path) for r in store.batch_manifest(batch.id)]
    copies = sorted((tmp_path / "routed").rglob("*.dcm"))
    assert len(landed) == len(copies) == len(inputs)
    assert sum(resident_pages(p) for p in landed) == 0
    assert sum(resident_pages(p) for p in copies) == 0
