"""Realtime C-STORE/C-ECHO SCP against real DCMTK clients (storescu, echoscu) on 127.0.0.1."""
from __future__ import annotations

import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydicom import dcmread

from axiom_dagster.synth import SynthSpec, generate_archive
from axiom_dagster.ingest.rawheader import IMPLEMENTATION_CLASS_UID
from tests.realtime.support import DCMTK_ENV, InProcessService, dataset_bytes, make_certs, make_config
from tests.helpers import free_port

pytestmark = [pytest.mark.dcmtk, pytest.mark.skipif(shutil.which("/usr/bin/storescu") is None, reason="DCMTK not installed")]


def storescu(port: int, *paths, aec="AXIOM", aet="STORESCU", extra=(), timeout=120):
    cmd = ["/usr/bin/storescu", "-aet", aet, "-aec", aec, *extra, "127.0.0.1", str(port), *map(str, paths)]
    return subprocess.run(cmd, env=DCMTK_ENV, capture_output=True, text=True, timeout=timeout)


def assert_landed_identical(store, sources: list[Path]):
    rows = store.ledger_after(0, 100_000)
    by_sop = {}
    for r in rows:
        by_sop.setdefault(r.sop_uid, []).append(r)
    for src in sources:
        sop = dcmread(src, stop_before_pixels=True).SOPInstanceUID
        assert len(by_sop.get(sop, [])) == 1, f"expected one ledger row for {src}"
        landed = Path(by_sop[sop][0].path)
        assert dataset_bytes(landed) == dataset_bytes(src), f"data set of {landed} differs from {src}"
        ds = dcmread(landed)
        assert ds.file_meta.MediaStorageSOPInstanceUID == sop
        # the receiver writes the File Meta Information itself (design §3)
        assert ds.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
        assert ds.file_meta.SourceApplicationEntityTitle.strip() == by_sop[sop][0].calling_ae
    assert len(rows) == len(sources)


@pytest.fixture
def service(tmp_path):
    _, config = make_config(tmp_path, listeners=[
        {"name": "main", "ae_title": "AXIOM", "port": free_port()},
        {"name": "ct-only", "ae_title": "AXIOM2", "port": free_port(), "allowed_calling_aes": ["CT01"]},
        {"name": "far-away", "ae_title": "AXIOM3", "port": free_port(), "allowed_networks": ["10.0.0.0/8", "192.168.0.0/16"]},
    ])
    svc = InProcessService(config)
    yield svc
    svc.stop()


def test_multi_series_study_one_association_byte_identical(service, tmp_path):
    files = generate_archive(tmp_path / "src", SynthSpec(studies=1, series_per_study=3, instances_per_series=4, rows=64, columns=64))
    result = storescu(service.port(), "+sd", "+r", tmp_path / "src")
    assert result.returncode == 0, result.stderr
    assert_landed_identical(service.store, files)
    rows = service.store.ledger_after(0, 1000)
    assert {r.association_id for r in rows} and len({r.association_id for r in rows}) == 1
    assert {r.source for r in rows} == {"main"} and {r.calling_ae for r in rows} == {"STORESCU"}
    assert {r.called_ae for r in rows} == {"AXIOM"} and {r.source_ip for r in rows} == {"127.0.0.1"}
    # the association is recorded as ended, so the landing sensor may consider the study complete
    # (when the connection closes: just after the sender saw the release response)
    study = rows[0].study_uid
    deadline = time.monotonic() + 5
    while service.store.studies_with_all_associations_closed([study]) != {study} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert service.store.studies_with_all_associations_closed([study]) == {study}
    assert service.service.metrics.instances.value(listener="main") == len(files)


def test_concurrent_associations(service, tmp_path):
    folders = []
    for i in range(4):
        generate_archive(tmp_path / f"src{i}", SynthSpec(studies=1, series_per_study=2, instances_per_series=5, rows=64, columns=64, seed=100 + i))
        folders.append(tmp_path / f"src{i}")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda f: storescu(service.port(), "+sd", "+r", f), folders))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    files = sorted(p for f in folders for p in f.rglob("*.dcm"))
    assert_landed_identical(service.store, files)
    assoc_ids = {r.association_id for r in service.store.ledger_after(0, 1000)}
    assert len(assoc_ids) == 4
    assert service.store.open_associations(assoc_ids) == set()


def test_echo(service):
    result = subprocess.run(["/usr/bin/echoscu", "-aec", "AXIOM", "127.0.0.1", str(service.port())],
                            env=DCMTK_ENV, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow  # every pydicom test file through storescu, twice
def test_compressed_and_deflated_stored_as_sent(service, tmp_path):
    """Stored without transcoding, byte-identical to what DCMTK storescp +B (bit-preserving)
    receives from the same storescu run (storescu re-encodes some odd files while sending,
    so the reference is what was sent, not the file on disk)."""
    from pydicom.data import get_testdata_file

    # storescu proposes uncompressed syntaxes unless told: one run per file with the flag that
    # proposes exactly that file's transfer syntax (so the sender never transcodes).
    cases = {"SC_rgb_rle.dcm": "-xr", "JPEG2000.dcm": "-xw", "SC_rgb_jpeg_dcmtk.dcm": "-xy",
             "SC_rgb_jpeg_gdcm.dcm": "-xs", "image_dfl.dcm": "-xd"}
    src, ref = tmp_path / "compressed", tmp_path / "reference"
    src.mkdir()
    ref.mkdir()
    ref_port = free_port()
    # +uf: SC_rgb_rle.dcm and SC_rgb_jpeg_gdcm.dcm share a SOP Instance UID; keep both.
    storescp = subprocess.Popen(["/usr/bin/storescp", "-aet", "AXIOM", "+B", "+xa", "+uf", "-od", str(ref), "-fe", ".dcm", str(ref_port)],
                                env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for name, flag in cases.items():
            path = get_testdata_file(name, download=False)
            assert path is not None, name
            shutil.copy(path, src / name)
            for port in (service.port(), ref_port):
                result = storescu(port, flag, src / name)
                assert result.returncode == 0, (name, result.stderr)
    finally:
        storescp.terminate()
        try:
            storescp.wait(10)
        except subprocess.TimeoutExpired:  # seen once under a loaded suite: the reference is complete by now
            storescp.kill()
            storescp.wait(10)
    rows = service.store.ledger_after(0, 100)
    assert len(rows) == len(cases)
    def key(ds):
        return ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID

    sent = {key(dcmread(p, stop_before_pixels=True)): p for p in ref.iterdir()}
    assert len(sent) == len(cases)
    for row in rows:
        assert dataset_bytes(Path(row.path)) == dataset_bytes(sent[(row.sop_uid, row.transfer_syntax_uid)]), row.sop_uid
    originals = {dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID for p in src.iterdir()}
    assert {r.transfer_syntax_uid for r in rows} == originals


def test_rejected_calling_ae(service, tmp_path):
    generate_archive(tmp_path / "src", SynthSpec(1, 1, 2, 64, 64))
    bad = storescu(service.port("ct-only"), "+sd", "+r", tmp_path / "src", aec="AXIOM2", aet="INTRUDER")
    assert bad.returncode != 0
    assert "Rejected" in bad.stderr or "rejected" in bad.stderr.lower(), bad.stderr
    assert service.store.ledger_count() == 0
    good = storescu(service.port("ct-only"), "+sd", "+r", tmp_path / "src", aec="AXIOM2", aet="CT01")
    assert good.returncode == 0, good.stderr
    assert service.store.ledger_count() == 2


def test_rejected_source_network(service, tmp_path):
    generate_archive(tmp_path / "src", SynthSpec(1, 1, 2, 64, 64))
    bad = storescu(service.port("far-away"), "+sd", "+r", tmp_path / "src", aec="AXIOM3")
    assert bad.returncode != 0
    assert "reject" in bad.stderr.lower(), bad.stderr
    assert service.store.ledger_count() == 0
    assert service.service.metrics.associations.value(listener="far-away", outcome="rejected") == 1


def test_wrong_called_ae_rejected(service, tmp_path):
    generate_archive(tmp_path / "src", SynthSpec(1, 1, 1, 64, 64))
    bad = storescu(service.port(), "+sd", "+r", tmp_path / "src", aec="SOMEONE")
    assert bad.returncode != 0
    assert service.store.ledger_count() == 0


def test_invalid_uid_refused_nothing_kept(service, tmp_path):

    files = generate_archive(tmp_path / "src", SynthSpec(1, 1, 2, 64, 64))
    ds = dcmread(files[1])  # the last one: storescu stops sending after an error status
    ds.StudyInstanceUID = "1.2.03.4"  # leading zero: not a valid UID
    ds.save_as(files[1])
    result = storescu(service.port(), "-v", "+sd", "+r", tmp_path / "src")
    assert "cannotunderstand" in result.stderr.lower().replace(" ", ""), result.stderr
    rows = service.store.ledger_after(0, 100)
    assert len(rows) == 1 and rows[0].sop_uid == dcmread(files[0]).SOPInstanceUID
    leftovers = [p for p in (tmp_path / "landing").rglob("*") if p.is_file() and p.suffix == ".tmp"]
    assert leftovers == []
    assert service.service.metrics.failures.value(listener="main", reason="invalid_uid") == 1
    # Not acknowledged, not landed, but kept in quarantine with its reason.
    (kept,) = service.store.exceptions("landing")
    assert "StudyInstanceUID is not a valid DICOM UID" in kept["reason"] and Path(kept["quarantine_path"]).exists()


def test_tls_and_mutual_tls(tmp_path):
    certs = make_certs(tmp_path / "certs")
    _, config = make_config(tmp_path, listeners=[{
        "name": "tls", "ae_title": "AXIOM_TLS", "port": free_port(),
        "tls": {"cert": str(certs["server.pem"]), "key": str(certs["server.key"]), "ca": str(certs["ca.pem"]),
                "require_client_cert": True}}])
    svc = InProcessService(config)
    try:
        files = generate_archive(tmp_path / "src", SynthSpec(1, 2, 2, 64, 64))
        ok = storescu(svc.port("tls"), "+sd", "+r", tmp_path / "src", aec="AXIOM_TLS",
                      extra=["+tls", str(certs["client.key"]), str(certs["client.pem"]), "+cf", str(certs["ca.pem"])])
        assert ok.returncode == 0, ok.stderr
        assert_landed_identical(svc.store, files)
        # without a client certificate the mutual-TLS listener refuses the connection
        anon = storescu(svc.port("tls"), "+sd", "+r", tmp_path / "src", aec="AXIOM_TLS",
                        extra=["+tla", "+cf", str(certs["ca.pem"])], timeout=30)
        assert anon.returncode != 0
        assert svc.store.ledger_count() == len(files)
    finally:
        svc.stop()


def test_retired_and_configured_private_sop_classes_accepted(tmp_path):
    """Ultrasound Image Storage (retired, 1.2.840.10008.5.1.4.1.1.6) and a private SOP class
    listed in the config are stored like any other."""
    _, config = make_config(tmp_path, listeners=[
        {"name": "main", "ae_title": "AXIOM", "port": free_port(), "extra_sop_classes": ["1.2.826.0.1.3680043.9.9999.1"]}])
    svc = InProcessService(config)
    try:
        from pynetdicom import AE

        files = generate_archive(tmp_path / "src", SynthSpec(1, 1, 2, 16, 16))
        classes = ["1.2.840.10008.5.1.4.1.1.6", "1.2.826.0.1.3680043.9.9999.1"]
        from realtime.sopclasses import storage_sop_classes

        storage_sop_classes(classes)  # the sending side must know them as storage classes too
        ae = AE(ae_title="OLDUS")  # DCMTK's storescu refuses SOP classes it does not know
        for sop_class in classes:
            ae.add_requested_context(sop_class, "1.2.840.10008.1.2.1")
        assoc = ae.associate("127.0.0.1", svc.port(), ae_title="AXIOM")
        assert assoc.is_established
        try:
            for path, sop_class in zip(files, classes):
                ds = dcmread(path)
                ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
                assert assoc.send_c_store(ds).Status == 0x0000
        finally:
            assoc.release()
        assert {r.sop_class_uid for r in svc.store.ledger_after(0, 10)} == {
            "1.2.840.10008.5.1.4.1.1.6", "1.2.826.0.1.3680043.9.9999.1"}
    finally:
        svc.stop()
