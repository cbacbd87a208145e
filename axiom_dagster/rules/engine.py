"""The rule engine: `compile_rules(config)` once, then `engine.morph(ds, meta, destinations)`.

(About 310 lines: compile and morph share the engine's state; splitting them would pass it
around for no clarity gained. The compile environment lives in compile_env.py.)

Evaluation
- Rulesets run in order of `priority` (higher first; ties keep declaration order), and so
  do the rules inside a ruleset. A `first_match` ruleset stops at its own first matching
  rule; later rulesets still run. `all_matches` evaluates every rule.
- A rule matches when it and its ruleset are enabled, `meta.source` is in their `sources`
  (when given), `meta.received_at` is inside their schedules (when given), and its
  `conditions` hold (no conditions: always).

Routing (what `morph` returns)
- No rulesets configured: every destination receives the instance unchanged.
- Otherwise the instance goes to the union of `destinations` of the matching rules, in the
  order of the `destinations` argument; names that are not configured destinations are
  ignored. If no matching rule names a destination, it goes to `default_destinations`
  (["*"] = all destinations; [] = nowhere).

Morphing
- For each destination it goes to, the matching rules contribute, in evaluation order,
  their `actions` (if the rule has no `destinations` list, or lists this destination) and
  then their `destination_actions[destination]`.
- A destination with no actions, or whose actions change nothing, receives the input
  object itself (`changed=False`); otherwise a structural copy (`changed=True`).
- Any quarantine (crosswalk miss with on_miss quarantine, or a quarantine action) makes
  the outcome a quarantine: `quarantine_reason` set, no copies.
- `record_original` (rule, or inherited from the ruleset) appends an item to Original
  Attributes Sequence (0400,0561) holding the previous values of the top-level attributes
  that the rule changed (attributes it created are listed with an empty value). It is
  skipped in a copy that the rule de-identified: the originals would undo the
  de-identification.

Processes: a RuleEngine pickles (crosswalk indexes and the key included), so it can be
sent to a process pool once; rebuilding from config per worker also works.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from pydicom import Dataset
from pydicom import Sequence as DicomSequence
from pydicom.dataelem import DataElement

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.rules.morph import DestinationCopy, MorphOutcome
from axiom_dagster.rules.action_base import ActionRun, CompiledAction, clone_dataset
from axiom_dagster.rules.actions import compile_action
from axiom_dagster.rules.conditions import compile_condition
from axiom_dagster.rules.context import EvalContext
from axiom_dagster.rules.compile_env import CompileEnv
from axiom_dagster.rules.matcher import generate
from axiom_dagster.config.rules import RulesConfig
from axiom_dagster.rules.schedules import CompiledSchedule

_ORIGINAL_ATTRIBUTES_SEQUENCE = 0x04000561


class CompiledRule:
    __slots__ = ("name", "ruleset", "qualname", "enabled", "sources", "schedule", "condition", "actions",
                 "destinations", "destination_actions", "record_original", "reason")


class CompiledRuleset:
    __slots__ = ("name", "enabled", "mode", "sources", "schedule", "rules")


@dataclass
class RuleTrace:
    """Why a rule did or did not match (see explain.py)."""

    ruleset: str
    rule: str
    matched: bool
    reasons: list[str] = field(default_factory=list)


def _ordered(items: Sequence[Any]) -> list[Any]:
    # Higher priority first; sorted() is stable, so ties keep declaration order.
    return sorted(items, key=lambda x: -x.priority)


def compile_rules(
    config: RulesConfig | Mapping[str, Any],
    secret_key: bytes | None = None,
    base_dir: Path | None = None,
) -> "RuleEngine":
    """Validate and compile rules once. `secret_key` overrides the profiles' env vars.

    Raises ConfigError (naming the field) for bad paths, regexes, crosswalk columns, and
    MissingSecretError when a de-identification or keyed date shift has no key.
    """
    if not isinstance(config, RulesConfig):
        config = RulesConfig.model_validate(config)
    env = CompileEnv(config, secret_key, base_dir)
    schedules = {name: CompiledSchedule(name, spec) for name, spec in config.schedules.items()}
    rulesets: list[CompiledRuleset] = []
    interned: dict = {}
    index_of = {id(rs): i for i, rs in enumerate(config.rulesets)}
    for rs in _ordered(config.rulesets):
        i = index_of[id(rs)]
        crs = CompiledRuleset()
        crs.name, crs.enabled, crs.mode = rs.name, rs.enabled, rs.mode
        crs.sources = frozenset(rs.sources) if rs.sources is not None else None
        crs.schedule = schedules[rs.schedule] if rs.schedule else None
        rule_index = {id(r): j for j, r in enumerate(rs.rules)}
        crs.rules = []
        for rule in _ordered(rs.rules):
            where = f"rulesets[{i}].rules[{rule_index[id(rule)]}]"
            cr = CompiledRule()
            cr.name, cr.ruleset, cr.enabled = rule.name, rs.name, rule.enabled
            cr.qualname = f"{rs.name}/{rule.name}"
            cr.sources = frozenset(rule.sources) if rule.sources is not None else None
            cr.schedule = schedules[rule.schedule] if rule.schedule else None
            cr.condition = compile_condition(rule.conditions, f"{where}.conditions", interned)
            cr.actions = [compile_action(a, f"{where}.actions[{k}]", env) for k, a in enumerate(rule.actions)]
            cr.destinations = tuple(rule.destinations) if rule.destinations is not None else None
            cr.destination_actions = {
                dest: [compile_action(a, f"{where}.destination_actions.{dest}[{k}]", env) for k, a in enumerate(acts)]
                for dest, acts in rule.destination_actions.items()
            }
            cr.record_original = rs.record_original if rule.record_original is None else rule.record_original
            cr.reason = rule.modification_reason or rs.modification_reason
            crs.rules.append(cr)
        rulesets.append(crs)
    return RuleEngine(rulesets, config.default_destinations, bool(config.rulesets), config.modifying_system)


class RuleEngine:
    """Compiled rules; implements axiom_dagster.morph.Morpher."""

    def __init__(self, rulesets: list[CompiledRuleset], default_destinations: Sequence[str],
                 configured: bool, modifying_system: str = "AXIOM") -> None:
        self.rulesets = rulesets
        self.default_destinations = tuple(default_destinations)
        self.configured = configured
        self.modifying_system = modifying_system

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_fast", None)  # generated code: rebuilt on first use after unpickling
        state.pop("_plan_cache", None)
        return state

    # -- matching -------------------------------------------------------------------
    def _fast_matcher(self):
        """All rules' conditions as one generated function (matcher.py), built once,
        lazily; None when it does not compile: then the interpreted path runs."""
        fast = self.__dict__.get("_fast", False)
        if fast is False:
            fast = self.__dict__["_fast"] = generate(self.rulesets)[1]
        return fast

    def matcher_source(self) -> str:
        """The text of the generated matcher (for inspection and tests)."""
        return generate(self.rulesets)[0]

    def match(self, ds: Dataset, meta: ArrivalMeta, traces: list[RuleTrace] | None = None) -> list[CompiledRule]:
        ctx = EvalContext(ds, meta)
        if traces is None:
            fast = self._fast_matcher()
            if fast is not None:
                return fast(ctx, meta, meta.received_at)
        matched: list[CompiledRule] = []
        when = meta.received_at
        for rs in self.rulesets:
            skip = None
            if not rs.enabled:
                skip = "ruleset disabled"
            elif rs.sources is not None and meta.source not in rs.sources:
                skip = f"ruleset limited to sources {sorted(rs.sources)}"
            elif rs.schedule is not None and not rs.schedule.active(when):
                skip = f"outside ruleset schedule {rs.schedule.name!r}"
            if skip is not None:
                if traces is not None:
                    traces.extend(RuleTrace(rs.name, r.name, False, [skip]) for r in rs.rules)
                continue
            stopped: str | None = None
            for rule in rs.rules:
                if stopped is not None:
                    if traces is not None:
                        traces.append(RuleTrace(rs.name, rule.name, False, [stopped]))
                    continue
                ok, why = self._rule_matches(rule, ctx, when, traces is not None)
                if traces is not None:
                    traces.append(RuleTrace(rs.name, rule.name, ok, why))
                if ok:
                    matched.append(rule)
                    if rs.mode == "first_match":
                        stopped = f"not evaluated: first_match ruleset stopped at rule {rule.name!r}"
        return matched

    @staticmethod
    def _rule_matches(rule: CompiledRule, ctx: EvalContext, when: datetime, explain: bool) -> tuple[bool, list[str]]:
        if not rule.enabled:
            return False, ["rule disabled"]
        if rule.sources is not None and ctx.meta.source not in rule.sources:
            return False, [f"rule limited to sources {sorted(rule.sources)}"]
        if rule.schedule is not None and not rule.schedule.active(when):
            return False, [f"outside schedule {rule.schedule.name!r}"]
        if rule.condition is None:
            return True, []
        if explain:
            return rule.condition.explain(ctx)
        return rule.condition.eval(ctx), []

    # -- routing --------------------------------------------------------------------
    def route(self, matched: list[CompiledRule], destinations: Sequence[str]) -> list[str]:
        wanted: set[str] = set()
        named = False
        for rule in matched:
            if rule.destinations is not None:
                named = True
                wanted.update(rule.destinations)
        if not named:
            wanted = set(self.default_destinations)
            if "*" in wanted:
                return list(destinations)
        return [d for d in destinations if d in wanted]

    @staticmethod
    def plan(matched: list[CompiledRule], destination: str) -> list[tuple[CompiledRule, list[CompiledAction]]]:
        steps = []
        for rule in matched:
            acts: list[CompiledAction] = []
            if rule.destinations is None or destination in rule.destinations:
                acts.extend(rule.actions)
            acts.extend(rule.destination_actions.get(destination, ()))
            if acts:
                steps.append((rule, acts))
        return steps

    def referenced_destinations(self) -> set[str]:
        """Destination names the rules mention, for the main config to validate."""
        names = {d for d in self.default_destinations if d != "*"}
        for rs in self.rulesets:
            for r in rs.rules:
                names.update(r.destinations or ())
                names.update(r.destination_actions)
        return names

    # -- morphing -------------------------------------------------------------------
    def _plans(self, matched: list[CompiledRule], destinations: Sequence[str]) -> list[tuple[str, list, tuple]]:
        """(destination, steps, signature of its actions) for each destination the instance
        goes to. They depend only on the matched rules and the destinations asked for,
        which repeat from instance to instance: computed once per combination."""
        cache = self.__dict__.setdefault("_plan_cache", {})
        key = (*matched, None, *destinations)
        plans = cache.get(key)
        if plans is None:
            plans = []
            for dest in self.route(matched, destinations):
                steps = self.plan(matched, dest)
                plans.append((dest, steps, tuple(id(a) for _, acts in steps for a in acts)))
            if len(cache) >= 256:  # bounded: rule sets with many sources or schedules
                cache.clear()
            cache[key] = plans
        return plans

    def morph(self, ds: Dataset, meta: ArrivalMeta, destinations: Sequence[str]) -> MorphOutcome:
        if not self.configured:
            return MorphOutcome(copies=[DestinationCopy(d, ds) for d in destinations])
        matched = self.match(ds, meta)
        outcome = MorphOutcome(matched_rules=[r.qualname for r in matched])
        misses: set = set()
        done: dict[tuple[int, ...], tuple[Dataset, bool]] = {}
        for dest, steps, signature in self._plans(matched, destinations):
            if not steps:
                outcome.copies.append(DestinationCopy(dest, ds, False))
                continue
            if signature in done:  # same actions as another destination: reuse the result
                result, changed = done[signature]
                outcome.copies.append(DestinationCopy(dest, clone_dataset(result) if changed else ds, changed))
                continue
            result, changed, reason = self.apply(ds, steps, misses)
            if reason is not None:
                return MorphOutcome(quarantine_reason=reason, matched_rules=outcome.matched_rules,
                                    lookup_misses=sorted(misses))
            done[signature] = (result, changed)
            outcome.copies.append(DestinationCopy(dest, result if changed else ds, changed))
        if misses:
            outcome.lookup_misses = sorted(misses)
        return outcome

    def apply(self, ds: Dataset, steps, misses: set | None = None) -> tuple[Dataset, bool, str | None]:
        work = clone_dataset(ds)
        run = ActionRun(misses)
        changed = False
        for rule, acts in steps:
            before = clone_dataset(work) if rule.record_original else None
            was_deidentified = run.deidentified
            rule_changed = False
            for action in acts:
                rule_changed |= action.apply(work, run)
                if run.quarantine_reason is not None:
                    return ds, False, run.quarantine_reason
            if rule_changed and before is not None and not (run.deidentified and not was_deidentified):
                record_original(work, before, rule.reason, self.modifying_system)
            changed |= rule_changed
        return work, changed, None


def record_original(after: Dataset, before: Dataset, reason: str, modifying_system: str) -> None:
    """Append an Original Attributes Sequence item for the top-level changes."""
    modified = Dataset()
    for tag, elem in before._dict.items():
        if tag == _ORIGINAL_ATTRIBUTES_SEQUENCE:
            continue
        new = after._dict.get(tag)
        if new is elem:
            continue
        if new is None or after[tag] != before[tag]:
            modified[tag] = before[tag]
    for tag in after._dict:
        if tag not in before._dict and tag != _ORIGINAL_ATTRIBUTES_SEQUENCE:
            modified[tag] = DataElement(tag, after[tag].VR, None)
    if not len(modified):
        return
    item = Dataset()
    item.ModifiedAttributesSequence = DicomSequence([modified])
    item.AttributeModificationDateTime = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S+0000")
    item.ModifyingSystem = modifying_system
    item.SourceOfPreviousValues = ""
    item.ReasonForTheAttributeModification = reason
    if "OriginalAttributesSequence" in after:
        after.OriginalAttributesSequence.append(item)
    else:
        after.OriginalAttributesSequence = DicomSequence([item])
