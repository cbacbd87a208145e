"""AxiomResource parses its configuration file once per version of the file."""
import os

from resources import AxiomResource


def test_the_configuration_is_parsed_once_per_file_version(tmp_path):
    path = tmp_path / "axiom.yaml"
    path.write_text("pipeline: {batch_max_studies: 7}\n")
    first = AxiomResource(config_path=str(path)).config
    assert AxiomResource(config_path=str(path)).config is first  # a new resource (a run step): no re-parse
    path.write_text("pipeline: {batch_max_studies: 9}\n")
    os.utime(path, ns=(1, 1))  # a new version even within the same mtime granule
    assert AxiomResource(config_path=str(path)).config.pipeline.batch_max_studies == 9


def test_environment_substitution_is_not_served_stale(tmp_path, monkeypatch):
    path = tmp_path / "axiom.yaml"
    path.write_text("catalog:\n  path: \"${AXIOM_TEST_CATALOG}\"\n")
    monkeypatch.setenv("AXIOM_TEST_CATALOG", str(tmp_path / "a"))
    assert AxiomResource(config_path=str(path)).config.catalog.path.endswith("/a")
    monkeypatch.setenv("AXIOM_TEST_CATALOG", str(tmp_path / "b"))
    assert AxiomResource(config_path=str(path)).config.catalog.path.endswith("/b")
