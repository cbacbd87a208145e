"""A stand-in for the Google Cloud Healthcare API DICOM store: Orthanc's DICOMweb behind a
proxy that speaks the parts of the Healthcare API a STOW-RS client meets.

- POST /token: an OAuth2 token endpoint for service accounts (JWT bearer grant): the signed
  assertion google-auth sends is verified with the account's public key.
- /v1/projects/{p}/locations/{l}/datasets/{d}/dicomStores/{s}/dicomWeb/...: requires
  `Authorization: Bearer <a token issued here>` (401 otherwise) and forwards to Orthanc.
  A STOW-RS request whose instances all exist already answers 409 Conflict, as the
  Healthcare API does.
"""
from __future__ import annotations

import io
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydicom import dcmread
from requests_toolbelt.multipart.decoder import MultipartDecoder

SERVICE_ACCOUNT = "axiom-delivery@axiom-test.iam.gserviceaccount.com"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
STORE_PATH = "/v1/projects/axiom-test/locations/local/datasets/ds/dicomStores/store/dicomWeb"


class HealthcareProxy:
    def __init__(self, orthanc):
        self.orthanc = orthanc
        self.tokens: set[str] = set()
        self.conflicts = 0
        self.unauthorized = 0
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    @property
    def token_uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/token"

    def credentials_file(self, folder) -> str:
        """A service account key file whose token endpoint is this proxy."""
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        path = folder / "google-credentials.json"
        path.write_text(json.dumps({
            "type": "service_account", "project_id": "axiom-test", "private_key_id": "test-key-1",
            "private_key": pem, "client_email": SERVICE_ACCOUNT, "client_id": "1",
            "token_uri": self.token_uri,
        }))
        return str(path)

    def start(self) -> "HealthcareProxy":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _all_exist(self, body: bytes, content_type: str) -> bool:
        uids = [dcmread(io.BytesIO(part.content), stop_before_pixels=True).SOPInstanceUID
                for part in MultipartDecoder(body, content_type).parts]
        known = [httpx.post(f"{self.orthanc.url}/tools/lookup", content=str(u), timeout=30).json() for u in uids]
        return bool(uids) and all(any(k["Type"] == "Instance" for k in hits) for hits in known)

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: bytes, content_type: str = "application/json"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def _token(self):
                form = parse_qs(self._body().decode())
                try:
                    assert form.get("grant_type") == [JWT_BEARER]
                    claims = jwt.decode(form["assertion"][0], proxy.key.public_key(), algorithms=["RS256"],
                                        audience="https://oauth2.googleapis.com/token")  # google-auth sets it so
                    assert claims["iss"] == SERVICE_ACCOUNT and "cloud-platform" in claims["scope"]
                except Exception:
                    return self._reply(400, b'{"error": "invalid_grant"}')
                token = f"ya29.test-{secrets.token_hex(8)}"
                proxy.tokens.add(token)
                self._reply(200, json.dumps({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}).encode())

            def _forward(self, method: str):
                if self.path == "/token" and method == "POST":
                    return self._token()
                if not self.path.startswith(STORE_PATH):
                    return self._reply(404, b'{"error": {"code": 404, "status": "NOT_FOUND"}}')
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer ") or auth[7:] not in proxy.tokens:
                    proxy.unauthorized += 1
                    return self._reply(401, b'{"error": {"code": 401, "status": "UNAUTHENTICATED"}}')
                body = self._body() if method == "POST" else None
                content_type = self.headers.get("Content-Type", "")
                if method == "POST" and proxy._all_exist(body, content_type):
                    proxy.conflicts += 1
                    return self._reply(409, b'{"error": {"code": 409, "message": "instance already exists", "status": "ALREADY_EXISTS"}}')
                target = f"{proxy.orthanc.dicomweb_url}{self.path[len(STORE_PATH):]}"
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
                r = httpx.request(method, target, content=body, headers=headers, timeout=60)
                self._reply(r.status_code, r.content, r.headers.get("Content-Type", "application/octet-stream"))

            def do_GET(self):
                self._forward("GET")

            def do_POST(self):
                self._forward("POST")

        return Handler
