"""What a new user trips on: --config after any subcommand, the realtime sample without a
JWT secret, the default configuration file, TLS files named by their field."""
from pathlib import Path

import pytest

from axiom_dagster.cli import main as axiom
from axiom_dagster.config.models import ConfigError, load_config
from axiom_dagster.config.settings import default_config_path
from tests.helpers import make_config, write_config_file

ROOT = Path(__file__).resolve().parents[2]


def test_config_accepted_after_every_subcommand(tmp_path, capsys):
    config_file = str(write_config_file(make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}"), tmp_path / "a.yaml"))
    assert axiom(["apikey", "create", "sender", "--role", "admin", "--config", config_file]) == 0
    assert axiom(["apikey", "list", "--config", config_file]) == 0
    assert "sender" in capsys.readouterr().out
    assert axiom(["apikey", "revoke", "sender", "--config", config_file]) == 0
    assert axiom(["status", "--config", config_file]) == 0
    assert axiom(["rules", "check", "--config", config_file]) == 0
    assert "OK" in capsys.readouterr().out


def test_realtime_sample_needs_no_jwt_secret(monkeypatch):
    monkeypatch.delenv("AXIOM_JWT_SECRET", raising=False)
    config = load_config(ROOT / "config" / "realtime.example.yaml")
    assert config.auth.jwt_secret is None


def test_default_config_is_the_projects(monkeypatch):
    monkeypatch.delenv("AXIOM_CONFIG", raising=False)
    assert default_config_path() == ROOT / "config" / "axiom.yaml"


def test_missing_tls_certificate_names_the_field(tmp_path):
    from realtime.service import RealtimeService
    from tests.realtime.support import make_config as realtime_config

    _, config = realtime_config(tmp_path, listeners=[{
        "name": "secure", "ae_title": "AXIOM", "port": 0,
        "tls": {"cert": "certs/missing.pem", "key": "certs/missing.key"}}])
    with pytest.raises(ConfigError, match=r"listener 'secure': field tls.cert: file not found: .*missing.pem"):
        RealtimeService(config)
    assert axiom(["realtime", "--config", str(tmp_path / "axiom.yaml")]) == 2
