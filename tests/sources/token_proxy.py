"""A small local HTTP proxy in front of Orthanc that demands `Authorization: Bearer <token>`
(401 otherwise), plus an OAuth2 token endpoint (POST /token) that answers a service-account
JWT grant the way Google's does: the stand-in for a Google Cloud Healthcare API DICOM store."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class TokenProxy:
    def __init__(self, upstream: str, token: str):
        self.upstream = upstream.rstrip("/")
        self.token = token
        self.rejected = 0
        self.token_grants = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/token" and b"grant_type=urn" in body and b"assertion=" in body:
                    proxy.token_grants += 1
                    self._send(200, json.dumps({"access_token": proxy.token, "expires_in": 3600, "token_type": "Bearer"}).encode(), "application/json")
                else:
                    self._send(400, b"{}", "application/json")

            def do_GET(self):
                if self.headers.get("Authorization") != f"Bearer {proxy.token}":
                    proxy.rejected += 1
                    self._send(401, b"missing or wrong bearer token", "text/plain")
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept",)}
                r = httpx.get(proxy.upstream + self.path, headers=headers, timeout=60)
                self._send(r.status_code, r.content, r.headers.get("content-type", "application/octet-stream"))

            def _send(self, status: int, body: bytes, content_type: str):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "TokenProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
