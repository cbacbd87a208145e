"""Object storage senders: Google Cloud Storage (CRC32C verified) and S3 (MD5 / ETag verified).

An instance is confirmed when the object exists after the upload with the checksum of the
bytes we hold. Uploading again overwrites with identical bytes, so a re-send is harmless.
Object names come from the destination's path template (UIDs validated, other values made
safe), rendered from the staged copy's header.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from pathlib import Path, PurePosixPath

from pydicom import dcmread

from axiom_dagster.config.destinations import GcsDestination, S3Destination
from axiom_dagster.destinations.base import DestinationUnreachable
from axiom_dagster.destinations.paths import render_path
from axiom_dagster.store.deliveries import DueDelivery, Outcome


def object_name(template: str, data_path: str) -> str:
    ds = dcmread(data_path, stop_before_pixels=True)
    return str(PurePosixPath(render_path(Path(), template, ds)))


class _BucketSender:
    def __init__(self, dest):
        self.dest = dest

    def send(self, items: list[DueDelivery]) -> list[Outcome]:
        outcomes = []
        for item in items:
            try:
                data = Path(item.source_path).read_bytes()
                name = object_name(self.dest.path_template, item.source_path)
            except FileNotFoundError:
                outcomes.append(Outcome(item.id, False, reason="staged copy is missing"))
                continue
            except Exception as exc:
                outcomes.append(Outcome(item.id, False, reason=f"staged copy unusable: {type(exc).__name__}"))
                continue
            outcome = self._put_and_check(item, name, data)
            # The object holds exactly these bytes (checksum verified): the audit's hash.
            outcomes.append(replace(outcome, content_sha256=hashlib.sha256(data).hexdigest()) if outcome.confirmed else outcome)
        return outcomes

    def verify(self, study_uid: str, sop_uids: set[str]) -> set[str]:
        # The upload already re-read each object's checksum: confirmed means verified.
        return sop_uids


class GcsSender(_BucketSender):
    def __init__(self, dest: GcsDestination):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        super().__init__(dest)
        options = {"api_endpoint": dest.endpoint} if dest.endpoint else None
        if dest.credentials_file:
            client = storage.Client.from_service_account_json(str(dest.credentials_file), project=dest.project, client_options=options)
        elif dest.endpoint:
            # A local stand-in (emulator) takes no credentials.
            client = storage.Client(project=dest.project or "local", credentials=AnonymousCredentials(), client_options=options)
        else:
            client = storage.Client(project=dest.project)
        self.bucket = client.bucket(dest.bucket)

    def _put_and_check(self, item: DueDelivery, name: str, data: bytes) -> Outcome:
        import google_crc32c
        from google.api_core import exceptions as gexc
        from requests import ConnectionError as RequestsConnectionError

        expected = base64.b64encode(google_crc32c.Checksum(data).digest()).decode()
        blob = self.bucket.blob(name)
        try:
            blob.upload_from_string(data, content_type="application/dicom", checksum="crc32c", timeout=self.dest.timeout_seconds)
            blob.reload(timeout=self.dest.timeout_seconds)
        except RequestsConnectionError:
            raise DestinationUnreachable("GCS: cannot reach the service") from None
        except gexc.GoogleAPICallError as exc:
            return Outcome(item.id, False, status_code=exc.code, reason=f"GCS upload failed: HTTP {exc.code}")
        except Exception as exc:  # the client's own checksum mismatch, among others
            return Outcome(item.id, False, reason=f"GCS upload failed: {type(exc).__name__}")
        if blob.crc32c != expected:
            return Outcome(item.id, False, reason="GCS object CRC32C differs from the instance's")
        return Outcome(item.id, True, status_code=200, location=f"gs://{self.dest.bucket}/{name}")


class S3Sender(_BucketSender):
    def __init__(self, dest: S3Destination):
        import boto3

        super().__init__(dest)
        from botocore.config import Config

        self.client = boto3.client(
            "s3", endpoint_url=dest.endpoint, region_name=dest.region,
            config=Config(connect_timeout=dest.timeout_seconds, read_timeout=dest.timeout_seconds, retries={"max_attempts": 1}),
        )

    def _put_and_check(self, item: DueDelivery, name: str, data: bytes) -> Outcome:
        from botocore.exceptions import ClientError, EndpointConnectionError

        digest = hashlib.md5(data)
        try:
            self.client.put_object(
                Bucket=self.dest.bucket, Key=name, Body=data, ContentType="application/dicom",
                ContentMD5=base64.b64encode(digest.digest()).decode(),
            )
            head = self.client.head_object(Bucket=self.dest.bucket, Key=name)
        except EndpointConnectionError:
            raise DestinationUnreachable("S3: cannot reach the endpoint") from None
        except ClientError as exc:
            code = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return Outcome(item.id, False, status_code=code, reason=f"S3 upload failed: {exc.response.get('Error', {}).get('Code', 'error')}")
        # A single-part upload's ETag is the hex MD5 of the object.
        if head.get("ETag", "").strip('"') != digest.hexdigest() or head.get("ContentLength") != len(data):
            return Outcome(item.id, False, reason="S3 object ETag/size differ from the instance's")
        return Outcome(item.id, True, status_code=200, location=f"s3://{self.dest.bucket}/{name}")
