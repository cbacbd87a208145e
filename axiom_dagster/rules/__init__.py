"""DICOM rule engine: conditions, routing and tag morphing over pydicom (no Dagster)."""
from .paths import ConfigError, TagPath
from .crosswalk import CrosswalkLookup, FileCrosswalk
from .engine import RuleEngine, RuleTrace, compile_rules
from .models import (
    Action, Condition, CrosswalkSpec, DeidProfileSpec, Rule, RulesConfig, Ruleset, Schedule,
)

__all__ = [
    "Action", "Condition", "ConfigError", "CrosswalkLookup", "CrosswalkSpec", "DeidProfileSpec",
    "FileCrosswalk", "Rule", "RuleEngine", "RuleTrace", "RulesConfig", "Ruleset", "Schedule",
    "TagPath", "compile_rules",
]
