"""Objects without Pixel Data (SR, ECG, RT plan, KOS, presentation state, encapsulated PDF,
pixel-stripped images) pass validation, are routed and catalogued; pixel length rules apply
to images only and respect YBR_FULL_422 and encapsulated pixel data."""
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from axiom_dagster.catalog.tables import connect
from axiom_dagster.pipeline.batching import plan_tick
from axiom_dagster.pipeline.run import run_batch
from axiom_dagster.pipeline.validation import validate_instance

from tests.helpers import land_folder, make_config
from tests.realworld.objects import PYDICOM_IMAGES, non_image_objects


def test_non_image_objects_validate(tmp_path):
    for path in non_image_objects(tmp_path):
        assert validate_instance(dcmread(path)) == [], path.name


@pytest.mark.parametrize("name", PYDICOM_IMAGES)
def test_images_of_every_encoding_validate(name):
    assert validate_instance(dcmread(get_testdata_file(name, download=False))) == []


def test_short_native_pixel_data_still_caught():
    ds = dcmread(get_testdata_file("SC_ybr_full_422_uncompressed.dcm", download=False))
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    assert any("pixel data truncated" in p for p in validate_instance(ds))


def test_non_image_objects_routed_and_catalogued(tmp_path, store):
    config = make_config(tmp_path, store.url)
    objects = non_image_objects(tmp_path / "in")
    report = land_folder(config, store, tmp_path / "in")
    assert report.landed == len(objects) and not report.rejected
    plan = plan_tick(store, config.pipeline, 0, datetime.now(timezone.utc))
    for batch in plan.new_batches:
        run_batch(config, store, batch.id, "run-1")
    assert store.exceptions() == []
    con = connect(config.catalog_path)
    classes = {r[0] for r in con.execute("SELECT DISTINCT sop_class_uid FROM instances").fetchall()}
    assert len(classes) >= 7
    assert con.execute("SELECT count(*) FROM instances").fetchone()[0] == len(objects)
    routed = list(Path(config.destination_path(config.destinations[0])).rglob("*.dcm"))
    assert len(routed) == len(objects)
