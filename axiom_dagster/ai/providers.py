"""Model clients: OpenAI chat completions with a JSON schema, and Vertex AI Gemini's
generateContent with a response schema.

One call: `complete(system, user, schema) -> Completion(text, tokens)`. Errors name the
provider and the kind of failure, never the values sent.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass

from axiom_dagster.config.ai import OpenAIProvider, VertexProvider


class AIProviderError(RuntimeError):
    pass


@dataclass
class Completion:
    text: str
    tokens: int


class OpenAIClient:
    def __init__(self, name: str, spec: OpenAIProvider) -> None:
        from openai import OpenAI

        key = os.environ.get(spec.api_key_env)
        if not key:
            raise AIProviderError(f"ai.providers.{name}: environment variable {spec.api_key_env} is not set")
        self.name, self.model = name, spec.model
        self.client = OpenAI(api_key=key, base_url=spec.base_url, timeout=spec.timeout_seconds, max_retries=1)

    def complete(self, system: str, user: str, schema: dict) -> Completion:
        try:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "answer", "schema": schema, "strict": True}},
            )
        except Exception as exc:
            raise AIProviderError(f"ai.providers.{self.name}: chat completion failed: {type(exc).__name__}") from None
        text = resp.choices[0].message.content or ""
        return Completion(text, resp.usage.total_tokens if resp.usage else 0)


def vertex_schema(schema: dict) -> dict:
    """Vertex's response schema is an OpenAPI subset: nullable instead of a null type, no
    additionalProperties."""
    out = copy.deepcopy(schema)
    out.pop("additionalProperties", None)
    if isinstance(out.get("type"), list):
        types = [t for t in out["type"] if t != "null"]
        out["type"], out["nullable"] = types[0], True
        if "enum" in out:
            out["enum"] = [v for v in out["enum"] if v is not None]
    for key in ("properties",):
        if key in out:
            out[key] = {k: vertex_schema(v) for k, v in out[key].items()}
    if "items" in out:
        out["items"] = vertex_schema(out["items"])
    return out


class VertexClient:
    """Gemini on Vertex AI through google-genai (the generateContent client that
    google-cloud-aiplatform ships with; its older vertexai.generative_models is deprecated)."""

    def __init__(self, name: str, spec: VertexProvider) -> None:
        from google import genai
        from google.genai import types

        credentials = None
        if spec.credentials == "anonymous":
            from google.oauth2.credentials import Credentials

            # google-genai wants a token to send: a placeholder that never expires or refreshes.
            credentials = Credentials(token="anonymous")
        self.name, self.model, self.types = name, spec.model, types
        http = types.HttpOptions(base_url=spec.api_endpoint) if spec.api_endpoint else None
        self.client = genai.Client(vertexai=True, project=spec.project, location=spec.location,
                                   credentials=credentials, http_options=http)

    def complete(self, system: str, user: str, schema: dict) -> Completion:
        try:
            resp = self.client.models.generate_content(
                model=self.model,
                contents=user,
                config=self.types.GenerateContentConfig(
                    system_instruction=system, response_mime_type="application/json",
                    response_schema=vertex_schema(schema),
                ),
            )
            text = resp.text or ""
        except Exception as exc:
            raise AIProviderError(f"ai.providers.{self.name}: generateContent failed: {type(exc).__name__}") from None
        usage = getattr(resp, "usage_metadata", None)
        return Completion(text, int(getattr(usage, "total_token_count", 0) or 0))


def make_client(name: str, spec: OpenAIProvider | VertexProvider):
    return OpenAIClient(name, spec) if spec.type == "openai" else VertexClient(name, spec)
