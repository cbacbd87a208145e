"""A local stand-in model server on 127.0.0.1 speaking two real protocols: OpenAI chat
completions (POST /v1/chat/completions, json_schema response format) and Vertex AI
generateContent (POST .../models/{model}:generateContent). The real client libraries talk
to it. Its "model" maps each value to the vocabulary term whose words all occur in the
value (case-insensitive), else null; rule drafting returns `draft_yaml`.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def standardize(user: str) -> str:
    vocab = json.loads(re.search(r"^Vocabulary: (.*)$", user, re.M).group(1))
    values = json.loads(re.search(r"^Values: (.*)$", user, re.M).group(1))
    results = []
    for v in values:
        low = v.lower()
        term = next((t for t in vocab if all(w in low for w in t.lower().split())), None)
        results.append({"input": v, "output": term})
    return json.dumps({"results": results})


class ModelServer:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.draft_yaml = "rulesets: []\n"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                path = self.path.split("?", 1)[0]
                server.requests.append({"path": path, "body": body, "auth": self.headers.get("Authorization")})
                if path.endswith("/chat/completions"):
                    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
                    reply = self._openai(body, server.answer(user))
                elif path.endswith(":generateContent"):
                    user = body["contents"][0]["parts"][0]["text"]
                    reply = self._vertex(server.answer(user))
                else:
                    self.send_error(404)
                    return
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            @staticmethod
            def _openai(body, text):
                return {
                    "id": "chatcmpl-local", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                }

            @staticmethod
            def _vertex(text):
                return {
                    "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
                    "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120},
                }

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, user: str) -> str:
        if "Values: " in user:
            return standardize(user)
        return json.dumps({"yaml": self.draft_yaml})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ModelServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
