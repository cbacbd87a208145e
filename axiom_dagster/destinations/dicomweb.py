"""STOW-RS senders (dicomweb-client): any DICOMweb server, and a Google Cloud Healthcare API
DICOM store reached with Google credentials.

Instances go in batched multipart requests, each part the staged file's bytes (what the audit
log's content hash describes); each instance's result comes from the response:
ReferencedSOPSequence confirms, FailedSOPSequence fails with its Failure Reason. A duplicate
(Failure Reason 0x0111, or HTTP 409 "already exists" from the Healthcare API) confirms: the
destination holds the instance. Query-back (QIDO-RS) is optional.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from io import BytesIO
from pathlib import Path

import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.web import _Transaction
from pydicom import Dataset, dcmread, dcmwrite

from axiom_dagster.config.destinations import HealthcareDestination, HttpAuth, StowDestination
from axiom_dagster.destinations.base import DestinationUnreachable
from axiom_dagster.dicom.file_meta import NotPlainPart10, read_file_meta
from axiom_dagster.store.deliveries import DueDelivery, Outcome

DUPLICATE = 0x0111
WARNING_OK = {0xB000, 0xB006, 0xB007}
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def http_session(auth: HttpAuth) -> requests.Session:
    session = requests.Session()
    if auth.type == "basic":
        session.auth = (auth.username, auth.password)
    elif auth.type == "bearer":
        session.headers["Authorization"] = f"Bearer {auth.token}"
    elif auth.type == "api_key":
        session.headers[auth.header] = auth.token
    return session


def google_session(dest: HealthcareDestination) -> requests.Session:
    """An authorized session that fetches and refreshes OAuth tokens itself (google-auth):
    a service account key file, or Application Default Credentials."""
    import google.auth
    from dicomweb_client.ext.gcp.session_utils import create_session_from_gcp_credentials

    if dest.credentials_file:
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_file(str(dest.credentials_file), scopes=[CLOUD_PLATFORM])
    else:
        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
    return create_session_from_gcp_credentials(credentials)


def part10_bytes(path: str) -> bytes:
    """The instance as sent in its multipart part: the staged file's own bytes when it is a
    plain Part 10 file (never decoded), else pydicom's re-encoding, as dicomweb-client's
    `store_instances` would send it."""
    data = Path(path).read_bytes()
    try:
        read_file_meta(data)
        return data
    except NotPlainPart10:
        with BytesIO() as out:
            dcmwrite(out, dcmread(BytesIO(data)))
            return out.getvalue()


def _response_dataset(response: requests.Response | None) -> Dataset | None:
    if response is None or not response.content:
        return None
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        return Dataset.from_json(response.json())
    except Exception:
        return None


class StowSender:
    def __init__(self, url: str, session: requests.Session, timeout: float, *, conflict_is_duplicate: bool = False):
        self.client = DICOMwebClient(url, session=session)
        self.client.set_http_retry_params(retry=False)  # our retry policy decides
        self.client._timeout = timeout  # dicomweb-client 0.61 has no setter for it
        self.url = url
        self.conflict_is_duplicate = conflict_is_duplicate

    @classmethod
    def for_destination(cls, dest: StowDestination | HealthcareDestination) -> "StowSender":
        if isinstance(dest, HealthcareDestination):
            return cls(dest.dicomweb_url, google_session(dest), dest.timeout_seconds, conflict_is_duplicate=True)
        return cls(dest.url.rstrip("/"), http_session(dest.auth), dest.timeout_seconds)

    def send(self, items: list[DueDelivery]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        parts: list[bytes] = []
        sent: list[DueDelivery] = []
        for item in items:
            try:
                parts.append(part10_bytes(item.source_path))
                sent.append(item)
            except FileNotFoundError:
                outcomes.append(Outcome(item.id, False, reason="staged copy is missing"))
            except Exception as exc:
                outcomes.append(Outcome(item.id, False, reason=f"staged copy unreadable: {type(exc).__name__}"))
        if not sent:
            return outcomes
        hashes = {i.id: hashlib.sha256(p).hexdigest() for i, p in zip(sent, parts)}
        status, answer = 200, None
        try:
            answer = self._post(parts)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            answer = _response_dataset(exc.response)
            if answer is None:
                if status == 409 and self.conflict_is_duplicate:
                    # The Healthcare API answers 409 when the instance exists already.
                    return outcomes + [Outcome(i.id, True, status_code=409, location=self.url, content_sha256=hashes[i.id]) for i in sent]
                return outcomes + [Outcome(i.id, False, status_code=status, reason=f"STOW-RS HTTP {status}") for i in sent]
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise DestinationUnreachable(f"STOW-RS: cannot reach the server ({type(exc).__name__})") from None
        return outcomes + [
            replace(o, content_sha256=hashes[o.delivery_id]) if o.confirmed else o
            for o in self._per_instance(sent, answer or Dataset(), status)
        ]

    def _post(self, parts: list[bytes]) -> Dataset:
        """What `store_instances` does after encoding (dicomweb-client 0.61, pinned): one
        multipart/related application/dicom POST to the studies resource."""
        url = self.client._get_studies_url(_Transaction.STORE)
        return self.client._http_post_multipart_application_dicom(url, parts)

    def _per_instance(self, sent: list[DueDelivery], answer: Dataset, status: int | None) -> list[Outcome]:
        referenced = {str(r.get("ReferencedSOPInstanceUID", "")): r for r in answer.get("ReferencedSOPSequence", [])}
        failed = {str(r.get("ReferencedSOPInstanceUID", "")): r for r in answer.get("FailedSOPSequence", [])}
        outcomes = []
        for item in sent:
            if item.sop_uid in referenced:
                outcomes.append(Outcome(item.id, True, status_code=status, location=self.url))
            elif item.sop_uid in failed:
                reason = failed[item.sop_uid].get("FailureReason")
                code = int(reason) if reason is not None else None
                if code == DUPLICATE or (status == 409 and self.conflict_is_duplicate):
                    outcomes.append(Outcome(item.id, True, status_code=code or status, location=self.url))
                else:
                    text = f"0x{code:04X}" if code is not None else "unknown"
                    outcomes.append(Outcome(item.id, False, status_code=code or status, reason=f"STOW-RS failure reason {text} (HTTP {status})"))
            else:
                outcomes.append(Outcome(item.id, False, status_code=status, reason=f"instance not in the STOW-RS response (HTTP {status})"))
        return outcomes

    def verify(self, study_uid: str, sop_uids: set[str]) -> set[str]:
        """Query-back (QIDO-RS): the SOP Instance UIDs of the study the server lists."""
        try:
            found = self.client.search_for_instances(study_instance_uid=study_uid, fields=["00080018"])
        except (requests.ConnectionError, requests.Timeout, requests.HTTPError) as exc:
            raise DestinationUnreachable(f"query-back: QIDO-RS failed ({type(exc).__name__})") from None
        uids = {str(Dataset.from_json(f).get("SOPInstanceUID", "")) for f in found}
        return uids & sop_uids
