"""`axiom rules test`: which rules matched, why the others did not, and what each
destination would receive (a tag-by-tag diff against the input).

Output shows attribute values: it is meant for an operator testing rules on a sample
file, never for logs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from pydicom import Dataset

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.rules.engine import RuleEngine, RuleTrace


@dataclass
class TagChange:
    path: str  # e.g. "(0010,0010) PatientName" or "...Sequence[0].(0008,1155) ..."
    before: Any  # None: absent
    after: Any  # None: removed


@dataclass
class Explanation:
    rules: list[RuleTrace]
    routed: list[str]
    quarantine_reason: str | None
    diffs: dict[str, list[TagChange]] = field(default_factory=dict)

    def text(self) -> str:
        lines = []
        for t in self.rules:
            mark = "MATCH" if t.matched else "no   "
            why = "" if t.matched else " - " + "; ".join(t.reasons)
            lines.append(f"{mark} {t.ruleset}/{t.rule}{why}")
        if self.quarantine_reason:
            lines.append(f"QUARANTINE: {self.quarantine_reason}")
        lines.append("destinations: " + (", ".join(self.routed) or "(none)"))
        for dest, changes in self.diffs.items():
            lines.append(f"[{dest}] {len(changes)} change(s)")
            for c in changes:
                lines.append(f"  {c.path}: {c.before!r} -> {c.after!r}")
        return "\n".join(lines)


def flatten(ds: Dataset, prefix: str = "") -> dict[str, Any]:
    """Dataset as {path: value text}, sequences expanded item by item."""
    out: dict[str, Any] = {}
    for elem in ds:
        name = f"{prefix}({elem.tag.group:04X},{elem.tag.element:04X}) {elem.keyword or elem.name}"
        if elem.VR == "SQ":
            out[name] = f"<{len(elem.value)} item(s)>"
            for i, item in enumerate(elem.value):
                out.update(flatten(item, f"{name}[{i}]."))
        else:
            value = elem.value
            out[name] = value if isinstance(value, (bytes, int, float)) else str(value)
    return out


def diff(before: Dataset, after: Dataset) -> list[TagChange]:
    a, b = flatten(before), flatten(after)
    changes = []
    for path in sorted(set(a) | set(b)):
        if a.get(path) != b.get(path) or (path in a) != (path in b):
            changes.append(TagChange(path, a.get(path), b.get(path)))
    return changes


def explain(engine: RuleEngine, ds: Dataset, meta: ArrivalMeta, destinations: Sequence[str]) -> Explanation:
    traces: list[RuleTrace] = []
    engine.match(ds, meta, traces)
    outcome = engine.morph(ds, meta, destinations)
    routed = [c.destination for c in outcome.copies]
    result = Explanation(traces, routed, outcome.quarantine_reason)
    for copy in outcome.copies:
        result.diffs[copy.destination] = diff(ds, copy.dataset) if copy.changed else []
    return result
