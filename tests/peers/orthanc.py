"""A real Orthanc (Debian package, with its DICOMweb plugin) started by a test on 127.0.0.1.

Orthanc 1.10 cannot bind to one address, so the configuration closes what it can: no remote
HTTP access, no unknown AE may find/move/get, modality hosts are checked. TCP_NODELAY=1 avoids
the 40 ms delayed-ACK stall per C-STORE (see ../shared/design.md).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.helpers import free_port

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def orthanc_available() -> bool:
    return os.path.exists(ORTHANC) and os.path.exists(DICOMWEB_PLUGIN)


@dataclass
class Orthanc:
    """One Orthanc process; `modalities` maps AE title -> port on 127.0.0.1 (C-MOVE targets and
    every AE allowed to query it)."""

    root: Path
    aet: str = "ORTHANC"
    modalities: dict[str, int] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def config(self) -> dict:
        return {
            "Name": "axiom-test",
            "StorageDirectory": str(self.root / "storage"),
            "IndexDirectory": str(self.root / "index"),
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowMove": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowStore": True,
            "DicomCheckModalityHost": True,
            "DicomModalities": {
                aet: {"AET": aet, "Host": "127.0.0.1", "Port": port,
                      "AllowEcho": True, "AllowFind": True, "AllowMove": True, "AllowGet": True,
                      "AllowStore": True}
                for aet, port in self.modalities.items()
            },
            "SynchronousCMove": True,
            "StableAge": 1,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{self.http_port}",
                         "Ssl": False, "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
            "ConcurrentJobs": 2,
            "LimitFindResults": 0,
            **self.extra,
        }

    def start(self, timeout: float = 20.0) -> "Orthanc":
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = self.root / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1))
        log = open(self.root / "orthanc.log", "ab")
        env = dict(os.environ, TCP_NODELAY="1")
        self.process = subprocess.Popen([ORTHANC, str(cfg)], stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: see {self.root / 'orthanc.log'}")
            try:
                # 401: up, with AuthenticationEnabled (a test of HTTP auth)
                if httpx.get(f"{self.url}/system", timeout=1).status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout} s")

    def stop(self) -> None:
        from tests.peers.process import stop_process

        stop_process(self.process)
        self.process = None

    def restart(self) -> "Orthanc":
        self.stop()
        return self.start()

    # REST helpers (Orthanc's own API, for assertions)
    def upload(self, data: bytes) -> dict:
        r = httpx.post(f"{self.url}/instances", content=data, timeout=30)
        r.raise_for_status()
        return r.json()

    def upload_files(self, paths) -> int:
        return sum(1 for p in paths if self.upload(Path(p).read_bytes()))

    def instances(self) -> list[str]:
        return httpx.get(f"{self.url}/instances", timeout=30).json()

    def studies(self) -> list[str]:
        return httpx.get(f"{self.url}/studies", timeout=30).json()

    def sop_instance_uids(self) -> set[str]:
        found = httpx.post(f"{self.url}/tools/find", json={
            "Level": "Instance", "Query": {}, "Expand": True}, timeout=60).json()
        return {i["MainDicomTags"]["SOPInstanceUID"] for i in found}

    def instance_file(self, orthanc_id: str) -> bytes:
        return httpx.get(f"{self.url}/instances/{orthanc_id}/file", timeout=30).content

    def file_by_sop_uid(self, sop_uid: str) -> bytes:
        ids = httpx.post(f"{self.url}/tools/lookup", content=sop_uid, timeout=30).json()
        ids = [i["ID"] for i in ids if i["Type"] == "Instance"]
        assert ids, "instance not in Orthanc"
        return self.instance_file(ids[0])
