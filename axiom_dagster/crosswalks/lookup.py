"""Opening a configured crosswalk for the rule engine: a plain file, or the promoted snapshot
of a sourced one (with a live query against its SQL source for the `live` on-miss policy)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pyarrow.parquet as pq

from axiom_dagster.config.crosswalks import CrosswalkSpec, SqlSource
from axiom_dagster.crosswalks.files import CrosswalkError, FileCrosswalk, index_columns, normalise_key
from axiom_dagster.crosswalks.index import CrosswalkIndex
from axiom_dagster.crosswalks.snapshot import SnapshotStore
from axiom_dagster.crosswalks.sources import live_lookup, sql_engine


class SnapshotCrosswalk:
    """The promoted snapshot of a sourced crosswalk, read once."""

    def __init__(self, name: str, spec: CrosswalkSpec, snapshot_root: Path) -> None:
        self.name = name
        self.spec = spec
        self.case_insensitive = spec.case_insensitive
        self.snapshot = SnapshotStore(snapshot_root, name)
        path = self.snapshot.current_file()
        if path is None or not path.exists():
            raise CrosswalkError(
                f"crosswalks.{name}: no promoted snapshot yet; run `axiom crosswalk refresh {name}` "
                "or materialize its asset"
            )
        self.file = path
        self._table = pq.read_table(path, use_threads=False)  # threads only add contention here
        self._engine = None

    def columns(self) -> list[str]:
        return list(self._table.column_names)

    def index(self, key_columns: Sequence[str]) -> CrosswalkIndex:
        columns = self._table.column_names
        data = {c: self._table.column(c).to_pylist() for c in columns}
        # Keys were folded when the snapshot was taken: no per-row work here.
        return index_columns(self.name, columns, data, key_columns, False)

    def live(self, key_columns: Sequence[str], key: tuple[str, ...]) -> tuple | None:
        """The row for `key` queried from the source now, in `columns()` order; None if absent."""
        if not isinstance(self.spec.source, SqlSource):
            return None
        if self._engine is None:
            self._engine = sql_engine(self.spec.source.url)
        row = live_lookup(self.spec.source, self._engine, key_columns, key)
        if row is None:
            return None
        return tuple(row.get(c) for c in self.columns())

    def __getstate__(self):
        # Engines do not pickle; a worker process opens its own on first use.
        return {**self.__dict__, "_engine": None}


def open_crosswalk(name: str, spec: CrosswalkSpec, base_dir: Path | None, snapshot_root: Path | None):
    if spec.snapshotted:
        root = Path(snapshot_root or "var/crosswalks")
        if not root.is_absolute() and base_dir is not None:
            root = Path(base_dir) / root
        return SnapshotCrosswalk(name, spec, root)
    return FileCrosswalk(name, spec, base_dir)


def snapshot_root(config) -> Path:
    """The configured snapshot folder, absolute (config: AxiomConfig or RulesConfig + base_dir)."""
    root = Path(config.crosswalk_snapshots)
    return root if root.is_absolute() else Path(getattr(config, "base_dir", Path.cwd())) / root


def refresh_crosswalk(config, name: str):
    """Snapshot one configured crosswalk's source; promoted only if its checks pass."""
    if name not in config.crosswalks:
        raise CrosswalkError(f"no crosswalk named {name!r}; configured: {sorted(config.crosswalks)}")
    spec = config.crosswalks[name]
    if not spec.snapshotted:
        raise CrosswalkError(f"crosswalks.{name}: a plain file crosswalk (path) has nothing to refresh")
    return SnapshotStore(snapshot_root(config), name).refresh(spec, getattr(config, "base_dir", None))


__all__ = ["SnapshotCrosswalk", "normalise_key", "open_crosswalk", "refresh_crosswalk", "snapshot_root"]
