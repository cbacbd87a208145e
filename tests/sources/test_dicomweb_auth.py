"""DICOMweb authentication behind a local proxy that checks the bearer token: a static bearer
token, a wrong one (HTTP 401 named), and Google service-account credentials whose token comes
from a local OAuth2 token endpoint (the Google Cloud Healthcare API flow, offline)."""
import json
from datetime import date

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from axiom_dagster.config.sources import BearerAuth, GoogleAuth
from axiom_dagster.sources.base import SourceError
from axiom_dagster.sources.dicomweb import DicomwebStudySource
from axiom_dagster.sources.sink import StudySink
from axiom_dagster.store.state import StateStore
from tests.helpers import make_config
from tests.sources.support import dicomweb_source, ledger_sops, load_archive, zone_for
from tests.sources.token_proxy import TokenProxy

RANGE = (date(2024, 1, 1), date(2024, 12, 31))


def _retrieve_all(tmp_path, source) -> int:
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    store = StateStore(config.state_store_url)
    store.migrate()
    for study in source.find_studies(*RANGE).studies:
        with StudySink(zone_for(config, store), source.name, study.study_uid) as sink:
            assert source.retrieve_study(study, sink).ok
    return len(ledger_sops(store))


def test_bearer_token_source_through_checking_proxy(tmp_path, orthanc):
    load_archive(orthanc, tmp_path / "a", studies=2, instances=2)
    with TokenProxy(orthanc.dicomweb_url, "s3cret-token") as proxy:
        good = DicomwebStudySource(dicomweb_source(orthanc, url=proxy.url, auth=BearerAuth(token="s3cret-token")))
        assert _retrieve_all(tmp_path, good) == 4
        assert proxy.rejected == 0

        bad = DicomwebStudySource(dicomweb_source(orthanc, url=proxy.url, auth=BearerAuth(token="wrong")))
        with pytest.raises(SourceError, match="HTTP 401"):
            bad.find_studies(*RANGE)
        assert proxy.rejected == 1
        anonymous = DicomwebStudySource(dicomweb_source(orthanc, url=proxy.url))
        with pytest.raises(SourceError, match="HTTP 401"):
            anonymous.echo()


def test_google_service_account_credentials(tmp_path, orthanc):
    load_archive(orthanc, tmp_path / "a", studies=1, instances=2)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with TokenProxy(orthanc.dicomweb_url, "ya29.local-token") as proxy:
        keyfile = tmp_path / "sa.json"
        keyfile.write_text(json.dumps({
            "type": "service_account", "project_id": "p", "private_key_id": "k1", "private_key": pem.decode(),
            "client_email": "axiom@p.iam.gserviceaccount.com", "client_id": "1", "token_uri": f"{proxy.url}/token",
        }))
        source = DicomwebStudySource(dicomweb_source(orthanc, url=proxy.url, auth=GoogleAuth(credentials_file=keyfile)))
        assert _retrieve_all(tmp_path, source) == 2
        assert proxy.token_grants == 1 and proxy.rejected == 0
