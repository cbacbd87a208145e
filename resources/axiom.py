"""The Dagster resource that hands assets and sensors the configuration and state store."""


from dagster import ConfigurableResource
from pydantic import PrivateAttr

from axiom_dagster.config import AxiomConfig
from axiom_dagster.settings import load_default_config
from axiom_dagster.state import StateStore


class AxiomResource(ConfigurableResource):
    """config_path: the YAML configuration; empty means $AXIOM_CONFIG or config/axiom.yaml."""

    config_path: str = ""
    _config: AxiomConfig | None = PrivateAttr(default=None)
    _store: StateStore | None = PrivateAttr(default=None)

    @property
    def config(self) -> AxiomConfig:
        if self._config is None:
            self._config = load_default_config(self.config_path or None)
        return self._config

    @property
    def store(self) -> StateStore:
        if self._store is None:
            self._store = StateStore(self.config.state_store_url)
            self._store.migrate()
        return self._store
