"""Where the configuration comes from when none is named: $AXIOM_CONFIG, else the project's
config/axiom.yaml, else built-in defaults rooted at the current folder."""
from __future__ import annotations

import os
from pathlib import Path


PROJECT_ROOT = Path(__file__).resolve().parents[2]  # axiom_dagster/config/settings.py -> repo root


def default_config_path() -> Path | None:
    env = os.environ.get("AXIOM_CONFIG")
    if env:
        return Path(env)
    candidate = PROJECT_ROOT / "config" / "axiom.yaml"
    return candidate if candidate.exists() else None


def load_default_config(path: str | Path | None = None):
    from axiom_dagster.config.models import AxiomConfig, load_config  # pydantic: imported when needed

    path = Path(path) if path else default_config_path()
    return load_config(path) if path else AxiomConfig()
