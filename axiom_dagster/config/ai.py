"""Configuration models for AI tag standardization and rule drafting.

Offline by default: no provider configured means no network call. A provider is OpenAI (chat
completions with a JSON schema) or Vertex AI Gemini (generateContent); keys and credentials
come from the environment. `vocabularies` are the controlled terms a `standardize` rule
action maps values to; `cost_guard` caps model calls and tokens per run and per UTC day.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenAIProvider(_Model):
    type: Literal["openai"] = "openai"
    model: str = "gpt-4o-mini"
    base_url: str | None = None  # another OpenAI-compatible endpoint
    api_key_env: str = "OPENAI_API_KEY"
    timeout_seconds: float = Field(60.0, gt=0)


class VertexProvider(_Model):
    type: Literal["vertex"] = "vertex"
    model: str = "gemini-2.0-flash"
    project: str
    location: str = "us-central1"
    api_endpoint: str | None = None  # e.g. a regional or private endpoint
    # "default": Application Default Credentials; "anonymous": a placeholder token (local stand-ins only).
    credentials: Literal["default", "anonymous"] = "default"


Provider = Annotated[Union[OpenAIProvider, VertexProvider], Field(discriminator="type")]


class CostGuard(_Model):
    max_calls_per_run: int = Field(50, ge=0)
    max_tokens_per_run: int = Field(200_000, ge=0)
    max_calls_per_day: int = Field(1_000, ge=0)
    max_tokens_per_day: int = Field(2_000_000, ge=0)


class AIConfig(_Model):
    providers: dict[str, Provider] = {}
    vocabularies: dict[str, list[str]] = {}
    cost_guard: CostGuard = CostGuard()
    batch_size: int = Field(25, ge=1, le=500)  # distinct values per model call
    draft_provider: str | None = None  # provider `axiom rules draft` asks

    @model_validator(mode="after")
    def _refs(self) -> AIConfig:
        if self.draft_provider is not None and self.draft_provider not in self.providers:
            raise ValueError(f"ai.draft_provider: unknown provider {self.draft_provider!r}")
        for name, terms in self.vocabularies.items():
            if not terms:
                raise ValueError(f"ai.vocabularies.{name}: needs at least one term")
        return self


def check_ai_references(config) -> list[str]:
    """Errors for standardize actions naming unknown providers or vocabularies (config is an
    AxiomConfig: rulesets and ai)."""
    errors = []
    for i, rs in enumerate(config.rulesets):
        for j, rule in enumerate(rs.rules):
            groups = [("actions", rule.actions)] + [(f"destination_actions.{d}", a) for d, a in rule.destination_actions.items()]
            for label, acts in groups:
                for k, act in enumerate(acts):
                    if act.action != "standardize":
                        continue
                    where = f"rulesets[{i}].rules[{j}].{label}[{k}]"
                    if act.provider not in config.ai.providers:
                        errors.append(f"{where}.provider: unknown ai provider {act.provider!r}")
                    if act.vocabulary not in config.ai.vocabularies:
                        errors.append(f"{where}.vocabulary: unknown ai vocabulary {act.vocabulary!r}")
    return errors
