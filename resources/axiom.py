"""The Dagster resource that hands assets and sensors the configuration and state store."""

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.config.settings import default_config_path, load_default_config
from axiom_dagster.store.audit import record_config_file
from axiom_dagster.store.state import StateStore

# One store (engine, connection pool) per URL per process, migrated once: Dagster builds a
# new resource for every sensor tick and run, which must not mean a new pool and migration.
_STORES: dict[str, StateStore] = {}
_CONFIGS_NOTED: set[tuple[str, str]] = set()


def shared_store(url: str) -> StateStore:
    if url not in _STORES:
        store = StateStore(url)
        store.migrate()
        _STORES[url] = store
    return _STORES[url]


class AxiomResource(ConfigurableResource):
    """config_path: the YAML configuration; empty means $AXIOM_CONFIG or config/axiom.yaml."""

    config_path: str = ""
    _config: AxiomConfig | None = PrivateAttr(default=None)

    @property
    def config(self) -> AxiomConfig:
        if self._config is None:
            self._config = load_default_config(self.config_path or None)
        return self._config

    @property
    def store(self) -> StateStore:
        store = shared_store(self.config.state_store_url)
        path = self.config_path or default_config_path()
        if path and (store.url, str(path)) not in _CONFIGS_NOTED:
            # A configuration changed since the last run or tick shows in the audit log.
            record_config_file(store, "dagster", path)
            _CONFIGS_NOTED.add((store.url, str(path)))
        return store
