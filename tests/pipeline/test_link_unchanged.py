"""A folder destination with `link_unchanged`: an instance routed unchanged is a hard link to
its landed file; a changed copy, or a folder on another filesystem, gets a file of its own.
A network destination's outbox copy of an unchanged instance is always a link."""
import copy
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydicom import dcmread

from axiom_dagster.config.destinations import DicomDestination
from axiom_dagster.config.models import FilesystemDestination
from axiom_dagster.pipeline.batching import plan_tick
from axiom_dagster.pipeline.run import run_batch
from axiom_dagster.rules.morph import DestinationCopy, MorphOutcome

from tests.helpers import land_folder, make_config, small_archive


class ChangesResearchCopy:
    """Routes every instance unchanged, except the copy for "research", which is renamed."""

    def morph(self, ds, meta, destinations):
        copies = []
        for name in destinations:
            if name == "research":
                changed = copy.deepcopy(ds)
                changed.InstitutionName = "Changed for research"
                copies.append(DestinationCopy(name, changed, changed=True))
            else:
                copies.append(DestinationCopy(name, ds))
        return MorphOutcome(copies=copies)


def _routed(store, batch_id: int) -> dict[tuple[int, str], Path]:
    rows = store.deliveries_for([r.id for r in store.batch_manifest(batch_id)])
    return {(d["ledger_id"], d["destination"]): Path(d["location"] or d["source_path"]) for d in rows
            if d["status"] in ("confirmed", "pending")}


def _other_filesystem(tmp_path: Path) -> Path:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a filesystem of its own")
    return shm / f"axiom-link-{os.getpid()}-{tmp_path.name}"


def _run(config, store, run_id: str, morpher=None):
    plan = plan_tick(store, config.pipeline, 0, datetime.now(timezone.utc))
    (batch,) = plan.new_batches
    kwargs = {"morpher_factory": morpher} if morpher else {}
    result = run_batch(config, store, batch.id, run_id, **kwargs)
    assert result.failed == 0
    return batch.id


def test_unchanged_instances_are_linked_changed_ones_copied(tmp_path, store):
    elsewhere = _other_filesystem(tmp_path)
    config = make_config(tmp_path, store.url, workers=2)
    config.destinations = [
        FilesystemDestination(name="linked", path=tmp_path / "linked", link_unchanged=True),
        FilesystemDestination(name="copied", path=tmp_path / "copied"),
        FilesystemDestination(name="research", path=tmp_path / "research", link_unchanged=True),
        FilesystemDestination(name="elsewhere", path=elsewhere, link_unchanged=True),
        DicomDestination(type="dicom", name="pacs", host="127.0.0.1", port=9, ae_title="NEVER_CALLED"),
    ]
    inputs = small_archive(tmp_path / "in", studies=2, series=2, instances=20)  # 80: both workers used
    assert land_folder(config, store, tmp_path / "in").landed == len(inputs)
    try:
        batch_id = _run(config, store, "run-1", ChangesResearchCopy)
        routed = _routed(store, batch_id)
        manifest = store.batch_manifest(batch_id)
        assert len(routed) == 5 * len(manifest) == 5 * len(inputs)
        for row in manifest:
            landed = os.stat(row.path)
            for name in ("linked", "pacs"):  # the folder's copy and the outbox's: the landed inode
                assert os.path.samestat(os.stat(routed[row.id, name]), landed)
                assert routed[row.id, name].read_bytes() == Path(row.path).read_bytes()
            assert landed.st_nlink == 3
            for name in ("copied", "elsewhere"):  # a file of its own, the same bytes
                assert not os.path.samestat(os.stat(routed[row.id, name]), landed)
                assert routed[row.id, name].read_bytes() == Path(row.path).read_bytes()
            research = routed[row.id, "research"]  # changed: never a link, the landed file untouched
            assert not os.path.samestat(os.stat(research), landed)
            assert dcmread(research).InstitutionName == "Changed for research"
            assert dcmread(row.path).InstitutionName != "Changed for research"
        assert not list(tmp_path.rglob("*.tmp")) and not list(elsewhere.rglob("*.tmp"))

        # A re-run of the batch (rename over a link to the same inode) leaves no temp files
        # and still one link per routed instance.
        run_batch(config, store, batch_id, "run-2", morpher_factory=ChangesResearchCopy)
        assert not list((tmp_path / "linked").rglob("*.tmp"))
        assert all(os.stat(row.path).st_nlink == 3 for row in manifest)
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_a_temp_left_by_a_killed_run_is_replaced_by_the_link(tmp_path):
    from axiom_dagster.pipeline.worker import _hard_link

    landed, tmp = tmp_path / "landed.dcm", tmp_path / ".routed.dcm.123.tmp"
    landed.write_bytes(b"landed bytes")
    tmp.write_bytes(b"half a copy")
    assert _hard_link(str(landed), tmp)
    assert os.path.samestat(os.stat(tmp), os.stat(landed))
    assert not _hard_link(str(tmp_path / "gone.dcm"), tmp_path / "other.tmp")  # nothing to link: the caller copies
