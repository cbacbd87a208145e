"""Chooses the morpher the pipeline uses for a configuration."""
from __future__ import annotations

from functools import partial
from typing import Callable

from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.rules.morph import Morpher, PassThrough
from axiom_dagster.rules import compile_rules


def morpher_factory(config: AxiomConfig) -> Callable[[], Morpher]:
    """A picklable callable that builds the morpher inside each worker process.

    With rulesets configured, each worker compiles the rules once; the configuration
    object itself is a RulesConfig.
    """
    if not config.rulesets:
        return PassThrough
    return partial(compile_rules, config, None, config.base_dir)
