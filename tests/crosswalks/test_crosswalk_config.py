"""Crosswalk and AI configuration: the sample validates; mistakes name the field."""
from pathlib import Path

import pytest

from axiom_dagster.config.models import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_sample_validates():
    config = load_config(ROOT / "config" / "crosswalks.example.yaml")
    assert config.crosswalks["research_ids"].source.type == "sql"
    assert config.crosswalks["research_ids"].keys == ["mrn", "site"]
    assert not config.crosswalks["legacy"].snapshotted
    assert config.ai.providers["gemini"].type == "vertex"


@pytest.mark.parametrize("text, message", [
    ("crosswalks: {a: {source: {type: sql, url: 'sqlite://', table: t}}}", "needs keys"),
    ("crosswalks: {a: {source: {type: sql, url: 'sqlite://'}, keys: [k]}}", "exactly one of table, query"),
    ("crosswalks: {a: {source: {type: sql, url: 'sqlite://', table: 't; drop'}, keys: [k]}}", "plain name"),
    ("crosswalks: {a: {path: x.csv, cron: '0 3 * * *'}}", "belong to a crosswalk with a source"),
    ("crosswalks: {a: {source: {type: file, path: x.csv}, keys: [k], cron: 'nightly'}}", "5 fields"),
    ("crosswalks: {a: {source: {type: object, uri: 'ftp://x/y'}, keys: [k]}}", "gs://bucket/key"),
    ("crosswalks: {a: {path: x.csv}}\nrulesets: [{name: r, rules: [{name: x, actions: [{action: crosswalk, crosswalk: a, "
     "match: {k: PatientID}, set: {PatientID: v}, on_miss: live}]}]}]", "live needs a crosswalk with a sql source"),
    ("rulesets: [{name: r, rules: [{name: x, actions: [{action: standardize, attribute: BodyPartExamined, "
     "vocabulary: v, provider: p}]}]}]", "unknown ai provider 'p'"),
    ("ai: {providers: {p: {type: vertex}}}", "project"),
])
def test_mistakes_name_the_field(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(text, source="axiom.yaml")
    assert "axiom.yaml:" in str(info.value)
