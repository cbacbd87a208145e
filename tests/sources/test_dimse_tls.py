"""DIMSE source over TLS against Orthanc's DICOM TLS (DicomTlsEnabled, peer certificate
required), certificates made with openssl: C-ECHO, C-FIND and C-GET retrieval work with our
client certificate; without TLS, or trusting another CA than the one that signed Orthanc's
certificate, the association fails and the failure is reported."""
from datetime import date

import pytest

from axiom_dagster.config.listeners import TLSConfig
from axiom_dagster.sources.base import SourceError
from axiom_dagster.sources.dimse import DimseStudySource
from axiom_dagster.sources.retrieve import retrieve_one
from axiom_dagster.store.state import StateStore
from tests.helpers import free_port, make_config
from tests.realtime.support import make_certs
from tests.sources.support import dimse_source, ledger_sops, load_archive, zone_for

RANGE = (date(2024, 1, 1), date(2024, 12, 31))


@pytest.fixture
def tls_orthanc(tmp_path, orthanc):
    certs = make_certs(tmp_path / "certs")
    orthanc.modalities = {"AXIOM": free_port()}
    orthanc.extra = {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(certs["server.pem"]),
        "DicomTlsPrivateKey": str(certs["server.key"]),
        "DicomTlsTrustedCertificates": str(certs["ca.pem"]),
        "DicomTlsRemoteCertificateRequired": True,
    }
    orthanc.restart()
    return orthanc, certs


def _tls(certs, ca=None) -> TLSConfig:
    return TLSConfig(cert=certs["client.pem"], key=certs["client.key"], ca=ca or certs["ca.pem"])


def test_tls_echo_find_and_get(tmp_path, tls_orthanc):
    orthanc, certs = tls_orthanc
    archive = load_archive(orthanc, tmp_path / "archive", studies=3, series=1, instances=3)
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    store = StateStore(config.state_store_url)
    store.migrate()
    source = DimseStudySource(dimse_source(orthanc, tls=_tls(certs)))
    assert source.echo() == "C-ECHO ok"
    studies = source.find_studies(*RANGE).studies
    assert {s.study_uid for s in studies} == set(archive)
    outcome = retrieve_one(source, zone_for(config, store), studies[0], run_id="tls")
    assert outcome.ok and outcome.fetched == 3, outcome.error
    assert set(ledger_sops(store)) == archive[studies[0].study_uid]["sops"]


def test_tls_peer_refuses_plain_and_we_refuse_an_untrusted_server(tmp_path, tls_orthanc):
    orthanc, certs = tls_orthanc
    with pytest.raises(SourceError, match="association with ORTHANC"):
        DimseStudySource(dimse_source(orthanc)).echo()  # no TLS on a TLS port
    other = make_certs(tmp_path / "other-ca")  # a CA that did not sign Orthanc's certificate
    with pytest.raises(SourceError, match="association with ORTHANC"):
        DimseStudySource(dimse_source(orthanc, tls=_tls(certs, ca=other["ca.pem"]))).echo()
    # Our certificate signed by a CA Orthanc does not trust: Orthanc refuses us.
    with pytest.raises(SourceError, match="association with ORTHANC"):
        DimseStudySource(dimse_source(orthanc, tls=TLSConfig(cert=other["client.pem"], key=other["client.key"],
                                                             ca=certs["ca.pem"]))).echo()
