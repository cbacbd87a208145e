"""Rule engine: conditions, routing and tag morphing over pydicom; the morph step's contract.
Imports config, dicom, ingest (arrival metadata), deid, crosswalks and ai.
"""
from axiom_dagster.rules.paths import ConfigError, TagPath
from axiom_dagster.crosswalks.files import CrosswalkLookup, FileCrosswalk
from axiom_dagster.rules.engine import RuleEngine, RuleTrace, compile_rules
from axiom_dagster.config.rules import (
    Action, Condition, CrosswalkSpec, DeidProfileSpec, Rule, RulesConfig, Ruleset, Schedule,
)

__all__ = [
    "Action", "Condition", "ConfigError", "CrosswalkLookup", "CrosswalkSpec", "DeidProfileSpec",
    "FileCrosswalk", "Rule", "RuleEngine", "RuleTrace", "RulesConfig", "Ruleset", "Schedule",
    "TagPath", "compile_rules",
]
