"""One Dagster resource per configured source: opens the source (DICOMweb, DIMSE or archive
folder) from the same YAML configuration as AxiomResource."""

from dagster import ConfigurableResource

from axiom_dagster.config.settings import load_default_config
from axiom_dagster.sources.registry import open_source


def source_resource_key(name: str) -> str:
    """Resource keys must be Python identifiers; source names may hold '-'."""
    return "source_" + name.replace("-", "_")


class SourceResource(ConfigurableResource):
    """source_name: a `sources[].name` of the configuration; config_path as in AxiomResource."""

    source_name: str
    config_path: str = ""

    def spec(self):
        return load_default_config(self.config_path or None).source(self.source_name)

    def open(self):
        """A connected source object; call .close() when done."""
        return open_source(load_default_config(self.config_path or None), self.source_name)
