"""The Orthanc peer the source and destination tests use: starts, stores, serves DICOMweb, restarts."""
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread

from axiom_dagster.synth import SynthSpec, generate_archive


@pytest.mark.slow  # starts and restarts Orthanc
def test_orthanc_peer_stores_serves_and_survives_restart(orthanc, tmp_path):
    paths = generate_archive(tmp_path / "a", SynthSpec(studies=1, series_per_study=1, instances_per_series=3, rows=16, columns=16))
    assert orthanc.upload_files(paths) == 3
    assert len(orthanc.sop_instance_uids()) == 3
    assert len(DICOMwebClient(orthanc.dicomweb_url).search_for_studies()) == 1
    original = paths[0].read_bytes()
    stored = orthanc.file_by_sop_uid(dcmread(paths[0]).SOPInstanceUID)
    assert stored[128:132] == b"DICM" and len(stored) >= len(original) - 512
    orthanc.restart()
    assert len(orthanc.instances()) == 3
