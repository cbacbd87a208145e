"""The standardization prompt, its JSON answer schema and its version.

The version is a hash of everything that shapes the answer (this template, the attribute,
the vocabulary and the action's extra instructions): change any of them and the cache asks
the model again instead of reusing answers to a different question.
"""
from __future__ import annotations

import hashlib
import json

TEMPLATE_REVISION = "1"

SYSTEM = (
    "You standardize DICOM attribute values to a controlled vocabulary. For each input value "
    "choose the single vocabulary term that means the same thing, or null when none fits. "
    "Answer only with JSON matching the schema; copy each input exactly."
)


def prompt_version(attribute: str, vocabulary: list[str], extra: str | None) -> str:
    text = json.dumps([TEMPLATE_REVISION, SYSTEM, attribute, vocabulary, extra or ""], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def user_message(attribute: str, vocabulary: list[str], extra: str | None, values: list[str]) -> str:
    parts = [f"Attribute: {attribute}", "Vocabulary: " + json.dumps(vocabulary, ensure_ascii=False)]
    if extra:
        parts.append(f"Instructions: {extra}")
    parts.append("Values: " + json.dumps(values, ensure_ascii=False))
    return "\n".join(parts)


def answer_schema(vocabulary: list[str]) -> dict:
    return {
        "type": "object",
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "input": {"type": "string"},
                        "output": {"type": ["string", "null"], "enum": [*vocabulary, None]},
                    },
                    "required": ["input", "output"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["results"],
        "additionalProperties": False,
    }


def parse_answers(text: str, values: list[str], vocabulary: list[str]) -> dict[str, str | None]:
    """input -> term for the values asked; terms outside the vocabulary and inputs not asked
    are dropped (a model may paraphrase); a value the model skipped gets no answer."""
    data = json.loads(text)
    asked = set(values)
    allowed = set(vocabulary)
    out: dict[str, str | None] = {}
    for item in data.get("results", []):
        inp, term = item.get("input"), item.get("output")
        if inp in asked:
            out[inp] = term if term in allowed else None
    return out
