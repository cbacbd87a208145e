"""Chooses the morpher the pipeline uses for a configuration."""
from __future__ import annotations

from functools import partial
from typing import Callable

from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.crosswalks.lookup import snapshot_root
from axiom_dagster.crosswalks.snapshot import SnapshotStore
from axiom_dagster.rules.morph import Morpher, PassThrough
from axiom_dagster.rules import compile_rules


def morpher_factory(config: AxiomConfig) -> Callable[[], Morpher]:
    """A picklable callable that builds the morpher inside each worker process.

    With rulesets configured, each worker compiles the rules once; the configuration
    object itself is a RulesConfig.
    """
    if not config.rulesets:
        return PassThrough
    snapshots = promoted_snapshots(config)
    if snapshots:  # a new promotion changes the factory, so the next run compiles again
        return partial(_compile_with_snapshots, config, snapshots)
    return partial(compile_rules, config, None, config.base_dir)


def promoted_snapshots(config: AxiomConfig) -> tuple[tuple[str, str | None], ...]:
    """(crosswalk, promoted snapshot file) for the sourced crosswalks."""
    root = snapshot_root(config)
    return tuple(
        (name, (SnapshotStore(root, name).current() or {}).get("file"))
        for name, spec in sorted(config.crosswalks.items()) if spec.snapshotted
    )


def _compile_with_snapshots(config: AxiomConfig, snapshots) -> Morpher:
    return compile_rules(config, None, config.base_dir)
