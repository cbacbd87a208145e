"""`axiom rules draft`: ask the configured model for YAML rules, then hold the answer to the
same standard as a hand-written file: the main configuration's schema (with the drafted
rulesets joined to the existing ones), the rule compiler, and the rule tester on sample files.
Nothing is saved here; the CLI asks before writing.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import yaml
from pydantic import ValidationError
from pydicom import dcmread

from axiom_dagster.ai.providers import AIProviderError, make_client
from axiom_dagster.config.rules import ActionType, Operator
from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.rules.engine import compile_rules
from axiom_dagster.rules.explain import explain
from axiom_dagster.rules.paths import ConfigError

# Compiling a drafted deidentify action needs a key; the preview uses a fixed one unless the
# real one is set (the tester's output is for the operator's eyes only).
PREVIEW_KEY = b"axiom-rules-draft-preview-key"

SYSTEM = f"""You write routing and morphing rules for Axiom, a DICOM router, as YAML.
Answer with JSON {{"yaml": "..."}} whose yaml is a mapping with a `rulesets` list, nothing else.
A ruleset: name, mode (first_match|all_matches), rules. A rule: name, conditions, actions,
destinations (names from the list given), destination_actions (destination -> actions).
A condition is exactly one of: all: [conditions], any: [conditions], not: condition,
or a leaf {{attribute: DICOM keyword, op, value}} or {{meta: calling_ae|called_ae|source_ip|source, op, value}}.
Operators: {", ".join(get_args(Operator))}. Action types: {", ".join(get_args(ActionType))}.
set needs attribute and value; deidentify needs profile (a name from the list given).
Use only destinations, deid profiles, crosswalks and vocabularies that exist."""


class DraftError(ValueError):
    pass


@dataclass
class Draft:
    yaml_text: str
    rulesets: list[dict]
    tester_report: str


def _context(config, request: str) -> str:
    return json.dumps({
        "request": request,
        "destinations": [d.name for d in config.destinations],
        "deid_profiles": sorted(config.deid_profiles),
        "crosswalks": sorted(config.crosswalks),
        "vocabularies": sorted(config.ai.vocabularies),
        "existing_rulesets": [rs.name for rs in config.rulesets],
    }, indent=1)


def _provider(config) -> str:
    name = config.ai.draft_provider or (next(iter(config.ai.providers)) if len(config.ai.providers) == 1 else None)
    if name is None:
        raise DraftError("no AI provider for drafting: configure ai.providers (and ai.draft_provider if several)")
    return name


def draft_rules(config, request: str, samples: list[Path] = (), calling_ae: str | None = None) -> Draft:
    name = _provider(config)
    try:
        done = make_client(name, config.ai.providers[name]).complete(
            SYSTEM, _context(config, request),
            {"type": "object", "properties": {"yaml": {"type": "string"}}, "required": ["yaml"], "additionalProperties": False},
        )
        text = json.loads(done.text)["yaml"]
    except AIProviderError as exc:
        raise DraftError(str(exc)) from None
    except (ValueError, KeyError, TypeError):
        raise DraftError("the model's answer is not JSON with a yaml field") from None
    return validate_draft(config, text, samples, calling_ae)


def validate_draft(config, text: str, samples: list[Path] = (), calling_ae: str | None = None) -> Draft:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DraftError(f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rulesets"), list) or set(data) != {"rulesets"}:
        raise DraftError("the YAML must be a mapping with only a `rulesets` list")
    merged = config.model_dump(mode="json")
    merged["rulesets"] = merged["rulesets"] + data["rulesets"]
    try:
        full = type(config).model_validate(merged)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'rulesets'}: {e['msg'].removeprefix('Value error, ')}"
                    for e in exc.errors()]
        raise DraftError("; ".join(problems)) from None
    full.base_dir = config.base_dir
    key = os.environ.get("AXIOM_DEID_SECRET", "").encode() or PREVIEW_KEY
    try:
        engine = compile_rules(full, key if len(key) >= 16 else PREVIEW_KEY, config.base_dir)
    except ConfigError as exc:
        raise DraftError(str(exc)) from None
    report = []
    for path in samples:
        result = explain(engine, dcmread(path), ArrivalMeta(source="import", calling_ae=calling_ae), [d.name for d in full.destinations])
        report.append(f"--- rule tester on {path.name}\n{result.text()}")
    return Draft(yaml.safe_dump({"rulesets": data["rulesets"]}, sort_keys=False), data["rulesets"],
                 "\n".join(report) or "(no sample files given: rule tester not run)")
