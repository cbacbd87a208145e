"""Chooses the morpher the pipeline uses for a configuration."""
from __future__ import annotations

from typing import Callable

from .config import AxiomConfig
from .morph import Morpher, PassThrough


def morpher_factory(config: AxiomConfig) -> Callable[[], Morpher]:
    """A picklable callable that builds the morpher inside each worker process."""
    return PassThrough
