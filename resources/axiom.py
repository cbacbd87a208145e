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
# Parsed configurations per file version and environment (${ENV} substitution): a run builds
# the resource once per step, a sensor tick once more, and parsing costs ~20 ms each time.
_PARSED: dict[tuple, AxiomConfig] = {}


def parsed_config(path: str | None) -> AxiomConfig:
    """The configuration at `path` (or the default one), parsed once per file version."""
    import os

    resolved = path or default_config_path()
    try:
        st = os.stat(resolved) if resolved else None
    except OSError:
        st = None
    if st is None:  # no file (defaults) or unreadable (load_default_config names the error)
        return load_default_config(path or None)
    key = (os.path.abspath(resolved), st.st_mtime_ns, st.st_size, st.st_ino, hash(frozenset(os.environ.items())))
    if key not in _PARSED:
        if len(_PARSED) > 16:
            _PARSED.clear()
        _PARSED[key] = load_default_config(path or None)
    return _PARSED[key]


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
            self._config = parsed_config(self.config_path or None)
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
