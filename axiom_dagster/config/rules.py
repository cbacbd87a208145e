"""Configuration models for rules, schedules, crosswalks and de-identification profiles.

The main config embeds `RulesConfig`'s fields. Every model forbids unknown keys, so a typo
is an error that names the field. Cross references (schedule, crosswalk and profile names)
are checked in `RulesConfig`, with the path of the offending field in the message.
"""
from __future__ import annotations

import re
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from axiom_dagster.config.crosswalks import CrosswalkSpec

Operator = Literal[
    "eq", "ne", "gt", "lt", "ge", "le", "contains", "startswith", "endswith", "regex",
    "in", "not_in", "exists", "not_exists", "cidr",
]
MetaField = Literal["calling_ae", "called_ae", "source_ip", "source"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ModificationReason = Literal["COERCE", "CORRECT"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Condition(_Model):
    """Exactly one of: `all`, `any`, `not` (combinators), `attribute` or `meta` (leaves).

    Leaf: `op` with `value` (a list for `in`/`not_in`, a CIDR or list of CIDRs for
    `cidr`, none for `exists`/`not_exists`). `match` says whether any or all values of a
    multi-valued attribute (or of a `[*]` sequence path) must satisfy the operator.
    """

    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(default=None, alias="not")
    attribute: str | None = None
    meta: MetaField | None = None
    op: Operator | None = None
    value: Any = None
    case_insensitive: bool = False
    match: Literal["any", "all"] = "any"

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        kinds = [k for k in ("all", "any", "not_", "attribute", "meta") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "a condition needs exactly one of all, any, not, attribute, meta; got "
                + (", ".join(k.rstrip("_") for k in kinds) or "none")
            )
        if kinds[0] in ("attribute", "meta"):
            if self.op is None:
                raise ValueError(f"op is required for a condition on {kinds[0]}")
            if self.op in ("exists", "not_exists"):
                if self.value is not None:
                    raise ValueError(f"op {self.op} takes no value")
            elif self.value is None:
                raise ValueError(f"op {self.op} needs a value")
            if self.op in ("in", "not_in") and not isinstance(self.value, list):
                raise ValueError(f"op {self.op} needs a list value")
            if self.op == "cidr" and self.meta != "source_ip":
                raise ValueError("op cidr applies only to meta: source_ip")
        elif self.op is not None or self.value is not None:
            raise ValueError("op/value belong on a leaf condition (attribute or meta)")
        return self


ActionType = Literal[
    "set", "delete", "prepend", "suffix", "regex_replace", "copy", "move", "crosswalk",
    "deidentify", "date_shift", "quarantine", "standardize",
]

_REQUIRED: dict[str, tuple[str, ...]] = {
    "set": ("attribute", "value"),
    "delete": ("attribute",),
    "prepend": ("attribute", "value"),
    "suffix": ("attribute", "value"),
    "regex_replace": ("attribute", "pattern", "replacement"),
    "copy": ("source", "attribute"),
    "move": ("source", "attribute"),
    "crosswalk": ("crosswalk", "match", "set"),
    "deidentify": ("profile",),
    "date_shift": (),
    "quarantine": (),
    "standardize": ("attribute", "vocabulary", "provider"),
}


class Action(_Model):
    """One change to a destination's copy of the instance; `action` selects the kind.

    Values may be templates: "{Modality}_{StudyDate}" takes attribute values (keywords,
    tags or paths) from the dataset as it is when the action runs; "{{" and "}}" are
    literal braces.
    """

    action: ActionType
    attribute: str | None = None
    vr: str | None = None
    value: Any = None
    pattern: str | None = None
    replacement: str | None = None
    source: str | None = None
    crosswalk: str | None = None
    match: dict[str, str] | None = None  # crosswalk column -> attribute path
    set: dict[str, str] | None = None  # attribute path -> crosswalk column
    # live: query the crosswalk's SQL source for a key its snapshot lacks (then as quarantine).
    on_miss: Literal["quarantine", "keep", "default", "live"] = "quarantine"
    default: dict[str, Any] | None = None  # attribute path -> value, for on_miss: default
    profile: str | None = None
    days: int | None = None
    keyed: bool = False
    max_days: int = Field(default=365, ge=1, le=36500)
    attributes: list[str] | None = None  # date_shift targets; default: every DA and DT
    secret_env: str = "AXIOM_DEID_SECRET"
    reason: str | None = None
    vocabulary: str | None = None  # standardize: a name in ai.vocabularies
    provider: str | None = None  # standardize: a name in ai.providers
    prompt: str | None = None  # standardize: extra instructions (changing them re-asks the model)

    @field_validator("vr")
    @classmethod
    def _vr(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Z]{2}", v):
            raise ValueError(f"not a DICOM VR: {v!r}")
        return v

    @model_validator(mode="after")
    def _fields(self) -> Action:
        missing = [f for f in _REQUIRED[self.action] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"action {self.action} needs: {', '.join(missing)}")
        if self.action == "date_shift" and (self.days is None) == (not self.keyed):
            raise ValueError("action date_shift needs either days or keyed: true (not both)")
        if self.action == "crosswalk" and self.on_miss == "default" and not self.default:
            raise ValueError("on_miss: default needs default values")
        return self


class Rule(_Model):
    name: str
    enabled: bool = True
    priority: int = 0  # higher runs first; ties keep declaration order
    sources: list[str] | None = None  # limit to these ArrivalMeta.source names
    schedule: str | None = None  # name of a schedule in `schedules`
    conditions: Condition | None = None  # none: always matches
    actions: list[Action] = []
    destinations: list[str] | None = None  # routes to these; none: routes nowhere itself
    destination_actions: dict[str, list[Action]] = {}
    record_original: bool | None = None  # none: inherit from the ruleset
    modification_reason: ModificationReason | None = None


class Ruleset(_Model):
    name: str
    enabled: bool = True
    priority: int = 0  # higher runs first; ties keep declaration order
    mode: Literal["first_match", "all_matches"] = "all_matches"
    sources: list[str] | None = None
    schedule: str | None = None
    record_original: bool = False
    modification_reason: ModificationReason = "COERCE"
    rules: list[Rule] = []

    @model_validator(mode="after")
    def _unique(self) -> Ruleset:
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ValueError(f"rules[{i}].name: duplicate rule name {rule.name!r}")
            seen.add(rule.name)
        return self


_RANGE_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class Schedule(_Model):
    """Days and time-of-day ranges in an IANA time zone; "22:00-06:00" runs overnight
    (it belongs to the day it starts on). No ranges: the whole of each listed day."""

    timezone: str = "UTC"
    days: list[Weekday] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    ranges: list[str] = []

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {v!r}") from exc
        return v

    @field_validator("ranges")
    @classmethod
    def _ranges(cls, v: list[str]) -> list[str]:
        for r in v:
            m = _RANGE_RE.match(r.replace(" ", ""))
            if not m or (m.group(3) == "24" and m.group(4) != "00"):
                raise ValueError(f"time range must look like 08:00-17:30, got {r!r}")
        return v


class DeidProfileSpec(_Model):
    """PS3.15 Basic Application Level Confidentiality Profile plus chosen options."""

    retain_long_full_dates: bool = False
    retain_long_modified_dates: bool = False
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    retain_uids: bool = False
    retain_safe_private: bool = False
    retain_institution_identity: bool = False
    clean_descriptors: bool = False
    clean_structured_content: bool = False
    clean_graphics: bool = False
    secret_env: str = "AXIOM_DEID_SECRET"  # env var with the key for UIDs and pseudonyms
    patient_id: Literal["hash", "empty"] = "hash"
    pseudonym_prefix: str = Field(default="ANON-", max_length=40)
    date_shift_max_days: int = Field(default=365, ge=1, le=36500)
    keep_references: bool = True  # X/Z/U* sequences: keep and remap their UIDs
    extra_safe_private: list[str] = []  # paths like '(0019,"SIEMENS MR HEADER",0C)'
    # Attributes to leave as they are, e.g. values a crosswalk set just before (a
    # ClinicalTrialSubjectID, a study pseudonym). Keywords or tags; top level and in items.
    keep: list[str] = []

    @model_validator(mode="after")
    def _dates(self) -> DeidProfileSpec:
        if self.retain_long_full_dates and self.retain_long_modified_dates:
            raise ValueError("choose one of retain_long_full_dates and retain_long_modified_dates")
        return self


class RulesConfig(_Model):
    """Routing and morphing configuration.

    Routing: an instance goes to the union of `destinations` of the rules that match.
    When rulesets are configured and no matching rule names a destination, it goes to
    `default_destinations` (["*"] means every destination; empty means nowhere). With no
    rulesets at all, every destination receives the instance unchanged.
    """

    rulesets: list[Ruleset] = []
    schedules: dict[str, Schedule] = {}
    crosswalks: dict[str, CrosswalkSpec] = {}
    # Where crosswalk snapshots (Parquet) and their promotion pointers live.
    crosswalk_snapshots: str = "var/crosswalks"
    deid_profiles: dict[str, DeidProfileSpec] = {}
    default_destinations: list[str] = []
    modifying_system: str = Field(default="AXIOM", max_length=64)

    @model_validator(mode="after")
    def _references(self) -> RulesConfig:
        errors: list[str] = []
        names: set[str] = set()
        for i, rs in enumerate(self.rulesets):
            where = f"rulesets[{i}]"
            if rs.name in names:
                errors.append(f"{where}.name: duplicate ruleset name {rs.name!r}")
            names.add(rs.name)
            if rs.schedule is not None and rs.schedule not in self.schedules:
                errors.append(f"{where}.schedule: unknown schedule {rs.schedule!r}")
            for j, rule in enumerate(rs.rules):
                rwhere = f"{where}.rules[{j}]"
                if rule.schedule is not None and rule.schedule not in self.schedules:
                    errors.append(f"{rwhere}.schedule: unknown schedule {rule.schedule!r}")
                groups = [("actions", rule.actions)] + [
                    (f"destination_actions.{d}", acts) for d, acts in rule.destination_actions.items()
                ]
                for label, acts in groups:
                    for k, act in enumerate(acts):
                        awhere = f"{rwhere}.{label}[{k}]"
                        if act.crosswalk is not None and act.crosswalk not in self.crosswalks:
                            errors.append(f"{awhere}.crosswalk: unknown crosswalk {act.crosswalk!r}")
                        elif act.on_miss == "live" and (
                            act.crosswalk is None or getattr(self.crosswalks[act.crosswalk].source, "type", None) != "sql"
                        ):
                            errors.append(f"{awhere}.on_miss: live needs a crosswalk with a sql source")
                        if act.profile is not None and act.profile not in self.deid_profiles:
                            errors.append(f"{awhere}.profile: unknown deid profile {act.profile!r}")
        if errors:
            raise ValueError("; ".join(errors))
        return self
