"""Every configured source becomes a resource, a StudyDate-partitioned backfill asset on its
own concurrency pool and (DICOMweb, DIMSE) a poll sensor with its retrieval job; the whole
code location validates. Configuration errors name the field."""
import pytest
from dagster import Definitions

from assets.backfill import source_definitions
from axiom_dagster.config.models import ConfigError, parse_config

YAML = """
sources:
  - name: pacs-web
    type: dicomweb
    url: http://127.0.0.1:8042/dicom-web
    auth: {type: basic, username: u, password: "${PACS_PASSWORD:-pw}"}
    backfill: {start_date: 1996-01-01, days_per_run: 10}
  - name: pacs-dimse
    type: dimse
    host: 127.0.0.1
    port: 4242
    remote_ae: PACS
    retrieve: move
    move_destination: {ae_title: AXIOM_MOVE, port: 11113}
  - name: old
    type: filesystem
    path: archive
"""


def test_definitions_per_source_validate(tmp_path):
    config = parse_config(YAML, base_dir=tmp_path)
    defs = source_definitions(config, with_axiom=True)
    Definitions.validate_loadable(defs)
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()} == {
        "pacs_web_archive", "pacs_dimse_archive", "old_archive"}
    asset = defs.resolve_assets_def("pacs_web_archive")
    assert asset.backfill_policy.max_partitions_per_run == 10
    keys = asset.partitions_def.get_partition_keys()
    assert keys[0] == "1996-01-01" and len(keys) < 100_000  # 30 years of days, well under the limit
    assert asset.op.pool == "axiom_source_pacs_web"
    job = defs.resolve_job_def("retrieve_source_pacs_dimse_job")
    assert job.graph.node_named("retrieve_source_pacs_dimse").definition.pool == "axiom_source_pacs_dimse"
    assert {s.name for s in defs.sensors} == {"poll_source_pacs_web", "poll_source_pacs_dimse"}


@pytest.mark.parametrize("snippet, message", [
    ("  - {name: a, type: dimse, host: h, port: 1, remote_ae: P, retrieve: move}", "move_destination"),
    ("  - {name: a, type: dicomweb, url: ftp://x}", "url"),
    ("  - {name: a, type: dicomweb, url: 'http://x', filters: {PatientNme: X}}", "unknown DICOM keywords in filters: PatientNme"),
    ("  - {name: a, type: filesystem, path: x}\n  - {name: a, type: filesystem, path: y}", "source names must be unique"),
    ("  - {name: a, type: dicomweb, url: 'http://x', auth: {type: bearer}}", "token"),
])
def test_source_configuration_errors_name_the_field(snippet, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_config("sources:\n" + snippet, source="axiom.yaml")
    assert str(err.value).startswith("axiom.yaml:")
