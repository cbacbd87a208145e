"""Pending C-GET-RSPs read in the DUL thread (dicom/store_receiver.py, quiet_pending) against a
real Orthanc: pynetdicom sees only some of them, every instance still arrives and the final
status is pynetdicom's; a retrieval longer than the DIMSE timeout is not cut off, because one
pending response is still passed on every PENDING_PASS_EVERY seconds."""
from __future__ import annotations

import time
from datetime import date

import pytest
from pydicom import Dataset
from pynetdicom import AE, build_context, build_role
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

from axiom_dagster.dicom import dimse_commands as dc
from axiom_dagster.dicom import store_receiver
from axiom_dagster.dicom.store_receiver import receive_stores
from axiom_dagster.sources.dimse import TRANSFER_SYNTAXES, DimseStudySource
from axiom_dagster.sources.sink import StudySink
from axiom_dagster.store.state import StateStore
from tests.helpers import make_config
from tests.sources.support import dimse_source, ledger_sops, load_archive, zone_for

RANGE = (date(2024, 1, 1), date(2024, 12, 31))
CT = "1.2.840.10008.5.1.4.1.1.2"


class _Collect:
    """StoreHandler keeping each received data set in memory."""

    def __init__(self, delay: float = 0.0):
        self.received: list[str] = []
        self.delay = delay

    def begin(self, assoc, sop_class, sop_instance, transfer_syntax):
        handler = self

        class Writer:
            def write(self, data):
                pass

            def finish(self):
                time.sleep(handler.delay)
                handler.received.append(sop_instance)
                return 0x0000, ""

            def discard(self):
                pass

        return Writer()


def _c_get(orthanc, study_uid: str, quiet: bool):
    """(statuses pynetdicom yielded, instances received, the receiver)."""
    ae = AE(ae_title="AXIOM")
    ae.add_requested_context(GET)
    ae.add_requested_context(CT, TRANSFER_SYNTAXES)
    assoc = ae.associate("127.0.0.1", orthanc.dicom_port, ae_title=orthanc.aet, ext_neg=[build_role(CT, scp_role=True)])
    assert assoc.is_established
    handler = _Collect()
    receiver = receive_stores(assoc, handler, quiet_pending=frozenset({dc.C_GET_RSP}) if quiet else frozenset())
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", study_uid
    try:
        statuses = [status.Status for status, _ in assoc.send_c_get(query, GET)]
    finally:
        assoc.release()
    return statuses, handler.received, receiver


@pytest.fixture
def study(orthanc, tmp_path):
    orthanc.modalities = {"AXIOM": 11112}
    orthanc.restart()
    archive = load_archive(orthanc, tmp_path / "archive", studies=1, series=3, instances=8)
    (uid, info), = archive.items()
    return uid, info["sops"]


def test_pending_responses_stay_in_the_dul_thread(orthanc, study):
    uid, sops = study
    plain, received, _ = _c_get(orthanc, uid, quiet=False)
    assert set(received) == sops and plain[-1] == 0x0000
    pending = [s for s in plain if s == 0xFF00]
    assert len(pending) >= len(sops) - 1  # Orthanc reports progress after each sub-operation

    statuses, received, receiver = _c_get(orthanc, uid, quiet=True)
    assert set(received) == sops and len(received) == len(sops)
    assert statuses[-1] == 0x0000 and statuses.count(0x0000) == 1
    passed = statuses.count(0xFF00)
    assert passed + receiver.pending_read == len(pending)
    assert passed <= 2 and receiver.pending_read >= len(pending) - 2


def test_retrieval_longer_than_the_dimse_timeout_completes(orthanc, study, tmp_path):
    """24 instances landed at 0.1 s each take 2.4 s; the DIMSE timeout is 1 s. With every
    pending response kept from pynetdicom its timeout would abort the association."""
    uid, sops = study
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    store = StateStore(config.state_store_url)
    store.migrate()

    class SlowSink(StudySink):  # a slow disk
        def add_dataset(self, *args, **kwargs):
            time.sleep(0.1)
            return super().add_dataset(*args, **kwargs)

    source = DimseStudySource(dimse_source(orthanc, timeout_seconds=1.0))
    try:
        ref = source.find_studies(*RANGE).studies[0]
        started = time.monotonic()
        with SlowSink(zone_for(config, store), source.name, uid) as sink:
            outcome = source.retrieve_study(ref, sink)
        elapsed = time.monotonic() - started
    finally:
        source.close()
    assert outcome.ok, outcome.error
    assert outcome.fetched == len(sops) and set(ledger_sops(store)) == sops
    assert elapsed > 2.0
    assert store_receiver.PENDING_PASS_EVERY == 1.0  # passed every 0.25 s here (timeout / 4)
