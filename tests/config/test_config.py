from pathlib import Path

import pytest

from axiom_dagster.config.models import ConfigError, load_config, parse_config

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "axiom.yaml"


def test_sample_config_loads_and_resolves_paths(monkeypatch):
    monkeypatch.delenv("AXIOM_STATE_STORE_URL", raising=False)
    config = load_config(SAMPLE)
    root = SAMPLE.parent.parent
    assert config.landing_path == (root / "var" / "landing").resolve()
    assert config.state_store_url == f"sqlite:///{(root / 'var' / 'state.db').resolve()}"
    assert [d.name for d in config.destinations] == ["archive"]


def test_env_substitution_with_default_and_value(monkeypatch):
    text = "state_store:\n  url: ${AXIOM_TEST_URL:-sqlite:///x.db}\n"
    monkeypatch.delenv("AXIOM_TEST_URL", raising=False)
    assert parse_config(text).state_store.url == "sqlite:///x.db"
    monkeypatch.setenv("AXIOM_TEST_URL", "postgresql+psycopg2://u@h/db")
    assert parse_config(text).state_store.url == "postgresql+psycopg2://u@h/db"


def test_missing_env_variable_names_file_line_and_field(monkeypatch):
    monkeypatch.delenv("AXIOM_NOT_SET", raising=False)
    text = "catalog:\n  path: /data\nstate_store:\n  url: ${AXIOM_NOT_SET}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="site.yaml")
    assert "site.yaml:4" in str(err.value)
    assert "state_store.url" in str(err.value)
    assert "AXIOM_NOT_SET" in str(err.value)


def test_invalid_value_names_file_line_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("landing:\n  path: /x\npipeline:\n  quiet_period_seconds: 5\n  batch_max_studies: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert f"{path}:5" in message and "pipeline.batch_max_studies" in message


def test_unknown_field_and_bad_destination(tmp_path):
    text = (
        "destinations:\n"
        "  - name: a\n    path: /a\n"
        "  - name: b\n    path: /b\n    path_template: '{PatientID}/x.dcm'\n"
        "surprise: 1\n"
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="c.yaml")
    message = str(err.value)
    assert "c.yaml:6: field destinations[1].path_template" in message
    assert "c.yaml:7: field surprise" in message


def test_duplicate_destination_names_rejected():
    text = "destinations:\n  - {name: a, path: /a}\n  - {name: a, path: /b}\n"
    with pytest.raises(ConfigError, match="repeated: a"):
        parse_config(text)


def test_yaml_syntax_error_names_line():
    with pytest.raises(ConfigError, match=r"x.yaml:2: invalid YAML"):
        parse_config("a: 1\n  b: [\n", source="x.yaml")
