"""Ruleset evaluation order, modes, scope, schedules, routing and per-destination copies."""
from __future__ import annotations

import pickle
from datetime import datetime, timezone

import pytest
import yaml
from pydicom import Dataset

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.rules import compile_rules
from axiom_dagster.rules.explain import explain
from axiom_dagster.config.rules import RulesConfig, Schedule
from axiom_dagster.rules.schedules import CompiledSchedule

KEY = b"test-secret-key-0123456789"
DESTS = ["pacs", "research", "archive"]


def make_ds() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Doe^John"
    ds.PatientID = "PID-001"
    ds.Modality = "CT"
    ds.StudyDescription = "head"
    ds.StudyInstanceUID = "1.2.840.1"
    ds.SeriesInstanceUID = "1.2.840.1.1"
    ds.SOPInstanceUID = "1.2.840.1.1.1"
    return ds


def tag(name, **kw):
    return {"name": name, "actions": [{"action": "suffix", "attribute": "StudyDescription", "value": f"+{name}"}], **kw}


def morph(config, ds=None, meta=None, dests=DESTS):
    engine = compile_rules(config, secret_key=KEY)
    return engine.morph(ds or make_ds(), meta or ArrivalMeta(), dests)


def desc(outcome, dest="pacs"):
    return {c.destination: c.dataset for c in outcome.copies}[dest].StudyDescription


def test_no_rulesets_is_pass_through():
    ds = make_ds()
    out = compile_rules({}).morph(ds, ArrivalMeta(), DESTS)
    assert [c.destination for c in out.copies] == DESTS
    assert all(c.dataset is ds and not c.changed for c in out.copies)


def test_default_destinations_when_nothing_routes():
    rs = [{"name": "rs", "rules": [{"name": "never", "conditions": {"attribute": "Modality", "op": "eq", "value": "MR"},
                                     "destinations": ["research"]}]}]
    assert morph({"rulesets": rs}).copies == []
    out = morph({"rulesets": rs, "default_destinations": ["archive"]})
    assert [c.destination for c in out.copies] == ["archive"]
    out = morph({"rulesets": rs, "default_destinations": ["*"]})
    assert [c.destination for c in out.copies] == DESTS


def test_first_match_stops_only_its_own_ruleset():
    config = {"rulesets": [
        {"name": "a", "mode": "first_match", "rules": [tag("a1", destinations=["pacs"]), tag("a2")]},
        {"name": "b", "mode": "all_matches", "rules": [tag("b1"), tag("b2")]},
    ]}
    out = morph(config)
    assert out.matched_rules == ["a/a1", "b/b1", "b/b2"]
    assert desc(out) == "head+a1+b1+b2"


def test_all_matches_runs_every_rule():
    out = morph({"rulesets": [{"name": "a", "rules": [tag("x", destinations=["pacs"]), tag("y")]}]})
    assert out.matched_rules == ["a/x", "a/y"]


def test_priorities_and_ties_keep_declaration_order():
    config = {"rulesets": [
        {"name": "low", "priority": 1, "rules": [tag("l1", destinations=["pacs"])]},
        {"name": "high", "priority": 5, "rules": [
            tag("h-tie-1"), tag("h-top", priority=9), tag("h-tie-2"), tag("h-neg", priority=-1)]},
        {"name": "low2", "priority": 1, "rules": [tag("l2")]},
    ]}
    out = morph(config)
    assert out.matched_rules == ["high/h-top", "high/h-tie-1", "high/h-tie-2", "high/h-neg", "low/l1", "low2/l2"]
    assert desc(out) == "head+h-top+h-tie-1+h-tie-2+h-neg+l1+l2"
    config["rulesets"][1]["mode"] = "first_match"
    assert morph(config).matched_rules == ["high/h-top", "low/l1", "low2/l2"]


def test_disabled_rules_and_rulesets():
    config = {"rulesets": [
        {"name": "a", "rules": [tag("on", destinations=["pacs"]), tag("off", enabled=False)]},
        {"name": "b", "enabled": False, "rules": [tag("b1")]},
    ]}
    assert morph(config).matched_rules == ["a/on"]


def test_scope_by_source():
    config = {"rulesets": [
        {"name": "a", "sources": ["ct-scp"], "rules": [tag("scoped-rs", destinations=["pacs"])]},
        {"name": "b", "rules": [tag("scoped-rule", sources=["mr-scp"], destinations=["pacs"])]},
    ]}
    assert morph(config, meta=ArrivalMeta(source="ct-scp")).matched_rules == ["a/scoped-rs"]
    assert morph(config, meta=ArrivalMeta(source="mr-scp")).matched_rules == ["b/scoped-rule"]
    assert morph(config, meta=ArrivalMeta(source="import")).matched_rules == []


def at(*args, tz=timezone.utc):
    return datetime(*args, tzinfo=tz)


def test_schedule_ranges_timezones_and_overnight():
    berlin = CompiledSchedule("office", Schedule(timezone="Europe/Berlin", days=["mon", "tue", "wed", "thu", "fri"],
                                                 ranges=["08:00-17:00"]))
    # 2024-03-15 is a Friday. 07:30 UTC = 08:30 in Berlin (CET, UTC+1).
    assert berlin.active(at(2024, 3, 15, 7, 30))
    assert not berlin.active(at(2024, 3, 15, 6, 30))  # 07:30 Berlin
    assert not berlin.active(at(2024, 3, 15, 16, 0))  # 17:00 Berlin: end is exclusive
    # Summer time: 2024-07-12 (Fri) 06:30 UTC = 08:30 CEST.
    assert berlin.active(at(2024, 7, 12, 6, 30))
    assert not berlin.active(at(2024, 3, 16, 9, 0))  # Saturday
    assert berlin.active(datetime(2024, 3, 15, 9, 0))  # naive counts as UTC

    night = CompiledSchedule("night", Schedule(timezone="America/New_York", days=["fri"], ranges=["22:00-06:00"]))
    ny = timezone.utc
    assert night.active(at(2024, 3, 16, 3, 30, tz=ny))  # Fri 23:30 New York (EDT, UTC-4)
    assert night.active(at(2024, 3, 16, 9, 30, tz=ny))  # Sat 05:30 New York: tail of Friday's night
    assert not night.active(at(2024, 3, 15, 9, 30, tz=ny))  # Fri 05:30: tail of Thursday, not listed
    assert not night.active(at(2024, 3, 16, 10, 30, tz=ny))  # Sat 06:30
    assert pickle.loads(pickle.dumps(night)).active(at(2024, 3, 16, 3, 30))

    whole = CompiledSchedule("w", Schedule(timezone="Asia/Tokyo", days=["sat"]))
    assert whole.active(at(2024, 3, 15, 15, 30))  # Sat 00:30 in Tokyo
    with pytest.raises(ValueError, match="time zone"):
        Schedule(timezone="Mars/Base")
    with pytest.raises(ValueError, match="time range"):
        Schedule(ranges=["8-17"])


def test_rule_outside_schedule_does_not_fire():
    config = {
        "schedules": {"nights": {"timezone": "Europe/Berlin", "ranges": ["22:00-06:00"]}},
        "rulesets": [{"name": "a", "rules": [tag("night", schedule="nights", destinations=["pacs"])]}],
    }
    assert morph(config, meta=ArrivalMeta(received_at=at(2024, 3, 15, 23, 0))).matched_rules == ["a/night"]
    assert morph(config, meta=ArrivalMeta(received_at=at(2024, 3, 15, 12, 0))).matched_rules == []


def test_per_destination_research_deidentified_pacs_corrected():
    config = {
        "deid_profiles": {"research": {"retain_patient_characteristics": True}},
        "rulesets": [{"name": "routing", "rules": [{
            "name": "ct-to-both",
            "conditions": {"attribute": "Modality", "op": "eq", "value": "CT"},
            "destinations": ["pacs", "research"],
            "actions": [{"action": "set", "attribute": "StudyDescription", "value": "HEAD CT"}],
            "destination_actions": {"research": [{"action": "deidentify", "profile": "research"}]},
        }]}],
    }
    ds = make_ds()
    out = morph(config, ds=ds)
    copies = {c.destination: c for c in out.copies}
    assert set(copies) == {"pacs", "research"}
    pacs, research = copies["pacs"].dataset, copies["research"].dataset
    assert pacs is not research and pacs is not ds
    assert pacs.StudyDescription == "HEAD CT" and pacs.PatientName == "Doe^John"
    assert pacs.SOPInstanceUID == ds.SOPInstanceUID
    assert research.PatientIdentityRemoved == "YES"
    assert research.PatientName != "Doe^John" and research.SOPInstanceUID != ds.SOPInstanceUID
    assert ds.StudyDescription == "head" and "PatientIdentityRemoved" not in ds  # input untouched


def test_rule_without_destinations_applies_to_every_routed_destination():
    config = {"rulesets": [
        {"name": "route", "rules": [{"name": "r", "destinations": ["pacs", "archive"]}]},
        {"name": "fix", "rules": [tag("fix-all"), tag("fix-archive", destinations=["archive"])]},
    ]}
    out = morph(config)
    assert desc(out, "pacs") == "head+fix-all"
    assert desc(out, "archive") == "head+fix-all+fix-archive"
    unchanged = morph({"rulesets": [{"name": "route", "rules": [{"name": "r", "destinations": ["pacs"]}]}]})
    assert unchanged.copies[0].changed is False


def test_routes_reused_across_instances_equal_a_fresh_engine():
    """Routes and plans are cached per (matched rules, destinations asked for): every
    combination, in any order, must give what a new engine (empty cache) gives."""
    config = {"rulesets": [
        {"name": "route", "rules": [
            {"name": "ct", "conditions": {"attribute": "Modality", "op": "eq", "value": "CT"}, "destinations": ["pacs"]},
            {"name": "mr", "conditions": {"attribute": "Modality", "op": "eq", "value": "MR"},
             "destinations": ["research", "archive"]},
        ]},
        {"name": "fix", "rules": [tag("fix-all"), tag("fix-archive", destinations=["archive"])]},
    ], "default_destinations": ["archive"]}
    engine = compile_rules(config, secret_key=KEY)

    def seen(out):
        return [(c.destination, c.changed, c.dataset.StudyDescription) for c in out.copies], out.matched_rules

    for modality in ("CT", "MR", "US", "MR", "CT", "US"):
        for dests in (DESTS, ["archive", "pacs"], ["research"], [], DESTS):
            ds = make_ds()
            ds.Modality = modality
            expected = compile_rules(config, secret_key=KEY).morph(ds, ArrivalMeta(), dests)
            assert seen(engine.morph(ds, ArrivalMeta(), dests)) == seen(expected)
    assert seen(engine.morph(make_ds(), ArrivalMeta(), DESTS))[0] == [
        ("pacs", True, "head+fix-all"), ("archive", True, "head+fix-all+fix-archive")]


def test_quarantine_yields_no_copies():
    config = {"rulesets": [{"name": "a", "rules": [
        tag("ok", destinations=["pacs"]),
        {"name": "stop", "destination_actions": {"pacs": [{"action": "quarantine", "reason": "nope"}]}},
    ]}]}
    out = morph(config)
    assert out.copies == [] and out.quarantine_reason == "nope" and out.matched_rules == ["a/ok", "a/stop"]


def test_engine_pickles_for_process_pool(tmp_path):
    (tmp_path / "m.csv").write_text("k,v\nCT,mapped\n")
    config = {
        "crosswalks": {"m": {"path": "m.csv"}},
        "deid_profiles": {"p": {}},
        "schedules": {"s": {"timezone": "Europe/Paris"}},
        "rulesets": [{"name": "a", "schedule": "s", "rules": [{
            "name": "r", "destinations": ["research"],
            "conditions": {"attribute": "PatientID", "op": "regex", "value": "^PID"},
            "actions": [{"action": "crosswalk", "crosswalk": "m", "match": {"k": "Modality"}, "set": {"StudyDescription": "v"}},
                        {"action": "deidentify", "profile": "p"}]}]}],
    }
    engine = compile_rules(config, secret_key=KEY, base_dir=tmp_path)
    clone = pickle.loads(pickle.dumps(engine))
    a = engine.morph(make_ds(), ArrivalMeta(), DESTS).copies[0].dataset
    b = clone.morph(make_ds(), ArrivalMeta(), DESTS).copies[0].dataset
    assert a.SOPInstanceUID == b.SOPInstanceUID != make_ds().SOPInstanceUID
    assert a.PatientID == b.PatientID != "PID-001"
    assert "StudyDescription" not in a  # mapped by the crosswalk, then removed (X) by the profile


def test_missing_secret_fails_clearly(monkeypatch):
    monkeypatch.delenv("AXIOM_DEID_SECRET", raising=False)
    config = {"deid_profiles": {"p": {}}, "rulesets": [{"name": "a", "rules": [
        {"name": "r", "actions": [{"action": "deidentify", "profile": "p"}]}]}]}
    with pytest.raises(RuntimeError, match="AXIOM_DEID_SECRET is not set"):
        compile_rules(config)
    monkeypatch.setenv("AXIOM_DEID_SECRET", "x" * 32)
    compile_rules(config)


def test_config_errors_name_fields():
    with pytest.raises(ValueError, match=r"rulesets\[0\]\.rules\[0\]\.actions\[0\]\.profile: unknown deid profile"):
        RulesConfig.model_validate({"rulesets": [{"name": "a", "rules": [
            {"name": "r", "actions": [{"action": "deidentify", "profile": "nope"}]}]}]})
    with pytest.raises(ValueError, match="Extra inputs"):
        RulesConfig.model_validate({"rulesets": [{"name": "a", "rulez": []}]})
    with pytest.raises(ValueError, match="duplicate rule name"):
        RulesConfig.model_validate({"rulesets": [{"name": "a", "rules": [{"name": "r"}, {"name": "r"}]}]})
    with pytest.raises(ValueError, match=r"rulesets\[0\]\.rules\[0\]\.conditions\.all\[1\]"):
        compile_rules({"rulesets": [{"name": "a", "rules": [{"name": "r", "conditions": {"all": [
            {"attribute": "Modality", "op": "eq", "value": "CT"},
            {"attribute": "PatientID", "op": "regex", "value": "(("}]}}]}]})


def test_explain_reports_reasons_and_diff():
    config = {"rulesets": [
        {"name": "a", "mode": "first_match", "rules": [
            {"name": "mr-only", "conditions": {"attribute": "Modality", "op": "eq", "value": "MR"}},
            tag("fix", destinations=["pacs"]),
            tag("never-reached"),
        ]},
        {"name": "b", "sources": ["other"], "rules": [tag("scoped")]},
    ]}
    engine = compile_rules(config)
    result = explain(engine, make_ds(), ArrivalMeta(), DESTS)
    reasons = {(t.ruleset, t.rule): t for t in result.rules}
    assert "Modality eq 'MR' (actual: ['CT'])" in reasons[("a", "mr-only")].reasons[0]
    assert reasons[("a", "fix")].matched
    assert "first_match" in reasons[("a", "never-reached")].reasons[0]
    assert "sources" in reasons[("b", "scoped")].reasons[0]
    assert result.routed == ["pacs"]
    [change] = result.diffs["pacs"]
    assert change.before == "head" and change.after == "head+fix"
    assert "MATCH a/fix" in result.text()


SAMPLE_YAML = """
default_destinations: []
schedules:
  after_hours: {timezone: Europe/Berlin, days: [mon, tue, wed, thu, fri], ranges: ["18:00-07:00"]}
crosswalks:
  trial_ids: {path: trial_ids.csv}
deid_profiles:
  research:
    retain_long_modified_dates: true
    retain_patient_characteristics: true
    clean_descriptors: true
    secret_env: AXIOM_DEID_SECRET
    keep: [ClinicalTrialSubjectID]
rulesets:
  - name: routing
    priority: 10
    mode: first_match
    rules:
      - name: ct-from-scanner
        sources: [ct-scp]
        conditions:
          all:
            - {attribute: Modality, op: in, value: [CT, PT]}
            - {meta: source_ip, op: cidr, value: 10.0.0.0/8}
            - any:
                - {attribute: StudyDescription, op: regex, value: "(?i)head", }
                - {attribute: "ReferencedSeriesSequence[*].SeriesInstanceUID", op: exists}
        destinations: [pacs, research]
        record_original: true
        modification_reason: CORRECT
        actions:
          - {action: set, attribute: InstitutionName, value: "Radiology {Modality}"}
        destination_actions:
          research:
            - {action: crosswalk, crosswalk: trial_ids, match: {mrn: PatientID},
               set: {ClinicalTrialSubjectID: subject}, on_miss: quarantine}
            - {action: deidentify, profile: research}
"""


def test_sample_yaml_config(tmp_path, monkeypatch):
    monkeypatch.setenv("AXIOM_DEID_SECRET", "s" * 32)
    (tmp_path / "trial_ids.csv").write_text("mrn,subject\nPID-001,SUBJ-9\n")
    config = RulesConfig.model_validate(yaml.safe_load(SAMPLE_YAML))
    engine = compile_rules(config, base_dir=tmp_path)
    out = engine.morph(make_ds(), ArrivalMeta(source="ct-scp", source_ip="10.0.0.5"), DESTS)
    copies = {c.destination: c.dataset for c in out.copies}
    assert copies["pacs"].InstitutionName == "Radiology CT"
    assert copies["pacs"].OriginalAttributesSequence[0].ReasonForTheAttributeModification == "CORRECT"
    assert copies["research"].ClinicalTrialSubjectID == "SUBJ-9"
    assert copies["research"].PatientIdentityRemoved == "YES"
