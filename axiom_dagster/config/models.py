"""The one YAML configuration file, parsed into pydantic models.

`${VAR}` and `${VAR:-default}` in string values are replaced from the environment (secrets
stay out of the file). Relative paths resolve against the folder of the configuration file.
Every error names the file, the line and the field.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from axiom_dagster.config.destinations import (  # noqa: F401 - re-exported
    DEFAULT_PATH_TEMPLATE,
    DESTINATION_TYPES,
    Destination,
    FilesystemDestination,
    NetworkDestination,
)
from axiom_dagster.config.errors import ENV_REF, ConfigError  # noqa: F401 - re-exported
from axiom_dagster.config.listeners import AuthConfig, DicomListener, HttpConfig, unique_listeners
from axiom_dagster.config.ai import AIConfig, check_ai_references
from axiom_dagster.config.rules import RulesConfig
from axiom_dagster.config.sources import Source, unique_sources



class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LandingConfig(_Model):
    path: Path = Path("var/landing")
    quarantine_path: Path = Path("var/quarantine")
    # How received files are made durable before they are acknowledged: "filesystem", one
    # syncfs per group of instances (Linux; elsewhere "file"), or "file", one fdatasync per
    # file and one fsync per folder (for a landing zone on a filesystem shared with busy
    # writers, whose dirty data syncfs would also write back).
    sync: Literal["filesystem", "file"] = "filesystem"


class StateStoreConfig(_Model):
    # SQLite file by default; postgresql+psycopg2://user@host/db in production.
    url: str = "sqlite:///var/state.db"


class CatalogConfig(_Model):
    # Local folder or gs://bucket/prefix.
    path: str = "var/catalog"


class PipelineConfig(_Model):
    quiet_period_seconds: float = Field(60.0, ge=0)
    batch_max_studies: int = Field(50, ge=1)
    max_batches_per_tick: int = Field(20, ge=1)
    ledger_rows_per_tick: int = Field(50_000, ge=1)
    # Process pool size inside a run; None means one per CPU core.
    workers: int | None = Field(None, ge=1)
    start_method: Literal["fork", "forkserver", "spawn"] = "fork"
    # A batch requested this long ago whose run never started is requested again.
    stale_request_seconds: float = Field(3600.0, gt=0)
    # Which arrival of a SOP Instance UID sent more than once is used: the latest complete
    # one, or the first (later arrivals recorded as superseded). Identical bytes: no-op.
    arrival_winner: Literal["latest", "first"] = "latest"
    # A batch whose run failed, was canceled or whose process died is requested again after
    # retry_delay_seconds, up to max_batch_attempts runs; then it stays failed.
    retry_delay_seconds: float = Field(60.0, ge=0)
    max_batch_attempts: int = Field(3, ge=1)


class DeliveryConfig(_Model):
    staging_path: Path = Path("var/outbox")
    # A claimed ("sent") instance with no outcome after this long is sent again (crash recovery).
    sent_lease_seconds: float = Field(600.0, gt=0)
    # Instances one delivery run takes per destination.
    max_instances_per_run: int = Field(5000, ge=1)
    # A staged copy is removed once its destination confirmed it (the landed original stays).
    keep_confirmed_copies: bool = False


class AxiomConfig(RulesConfig):
    """The whole configuration. Rulesets, schedules, crosswalks, deid_profiles,
    default_destinations and modifying_system come from RulesConfig (top-level keys)."""

    landing: LandingConfig = LandingConfig()
    state_store: StateStoreConfig = StateStoreConfig()
    catalog: CatalogConfig = CatalogConfig()
    pipeline: PipelineConfig = PipelineConfig()
    destinations: list[Destination] = Field(default_factory=list)
    delivery: DeliveryConfig = DeliveryConfig()
    listeners: list[DicomListener] = Field(default_factory=list)
    http: HttpConfig = HttpConfig()
    auth: AuthConfig = AuthConfig()
    sources: list[Source] = Field(default_factory=list)
    # Filled in by later features; kept here so one file holds everything.
    ai: AIConfig = AIConfig()
    # The folder relative paths resolve against (set by the loader, not by the file).
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @field_validator("destinations")
    @classmethod
    def _unique_destination_names(cls, value: list[Destination]):
        names = [d.name for d in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"destination names must be unique; repeated: {', '.join(dupes)}")
        return value

    @model_validator(mode="after")
    def _rules_name_known_destinations(self):
        known = {d.name for d in self.destinations} | {"*"}
        unknown = []
        for i, rs in enumerate(self.rulesets):
            for j, rule in enumerate(rs.rules):
                where = f"rulesets[{i}].rules[{j}]"
                unknown += [f"{where}.destinations: unknown destination {d!r}" for d in rule.destinations or [] if d not in known]
                unknown += [
                    f"{where}.destination_actions.{d}: unknown destination {d!r}"
                    for d in rule.destination_actions if d not in known
                ]
        unknown += [f"default_destinations: unknown destination {d!r}" for d in self.default_destinations if d not in known]
        unknown += check_ai_references(self)
        if unknown:
            raise ValueError("; ".join(unknown))
        return self

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, value):
        return unique_sources(value)

    def source(self, name: str):
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(f"no source named {name!r} (configured: {', '.join(s.name for s in self.sources) or 'none'})")

    @field_validator("listeners")
    @classmethod
    def _unique_listeners(cls, value: list[DicomListener]):
        return unique_listeners(value)

    def resolve(self, path: Path | str) -> Path:
        path = Path(path)
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def landing_path(self) -> Path:
        return self.resolve(self.landing.path)

    @property
    def quarantine_path(self) -> Path:
        return self.resolve(self.landing.quarantine_path)

    @property
    def catalog_path(self) -> str:
        return self.catalog.path if "://" in self.catalog.path else str(self.resolve(self.catalog.path))

    @property
    def state_store_url(self) -> str:
        """The URL with a relative SQLite path made absolute against base_dir."""
        url = self.state_store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
            return prefix + str(self.resolve(url[len(prefix):]))
        return url

    def destination_path(self, dest: FilesystemDestination) -> Path:
        return self.resolve(dest.path)

    @property
    def staging_path(self) -> Path:
        """Where the pipeline writes each network destination's copy until it is confirmed."""
        return self.resolve(self.delivery.staging_path)


def load_config(path: str | Path) -> AxiomConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from exc
    return parse_config(text, source=str(path), base_dir=path.resolve().parent)


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None) -> AxiomConfig:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if root is None:
        data: Any = {}
    else:
        data = _to_python(root, source, ())
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the configuration must be a mapping of sections")
    try:
        config = AxiomConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, root, source)) from None
    config.base_dir = base_dir or Path.cwd()
    return config


_SCALARS = yaml.SafeLoader("")


def _to_python(node: yaml.Node, source: str, loc: tuple) -> Any:
    """Turn a composed YAML node into Python values, substituting ${ENV} in strings."""
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = key_node.value
            out[key] = _to_python(value_node, source, loc + (key,))
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, source, loc + (i,)) for i, item in enumerate(node.value)]
    value = _SCALARS.construct_object(node)  # YAML's own typing rules (int, bool, null...)
    if isinstance(value, str) and "${" in value:
        value = _substitute_env(value, f"{source}:{node.start_mark.line + 1}", loc)
    return value


def _substitute_env(value: str, where: str, loc: tuple) -> str:
    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{where}: field {_dotted(loc)}: environment variable {name} is not set "
            f"(write ${{{name}:-default}} to give a default)"
        )

    return ENV_REF.sub(replace, value)


def _node_at(root: yaml.Node | None, loc: tuple) -> yaml.Node | None:
    """The deepest YAML node along a pydantic error location."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                return node
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _dotted(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


_FIELD_MESSAGE = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.+)$")
_PATH_PART = re.compile(r"([A-Za-z_]\w*)|\[(\d+)\]")


def parse_field_path(path: str) -> tuple:
    """'rulesets[0].rules[2].actions' -> ('rulesets', 0, 'rules', 2, 'actions')."""
    return tuple(name if name else int(index) for name, index in _PATH_PART.findall(path))


def locate(root: yaml.Node | None, source: str, loc: tuple, message: str) -> str:
    node = _node_at(root, loc)
    line = node.start_mark.line + 1 if node is not None else 1
    return f"{source}:{line}: field {_dotted(loc)}: {message}"


def _describe(exc: ValidationError, root: yaml.Node | None, source: str) -> str:
    lines = []
    for err in exc.errors():
        # A destination's union tag (destinations[1].dicom.port) is not a field of the file.
        loc = tuple(p for i, p in enumerate(err["loc"]) if not (p in DESTINATION_TYPES and i and isinstance(err["loc"][i - 1], int)))
        message = err["msg"].removeprefix("Value error, ")
        # Cross-field validators report "field.path: text; other.path: text" at the top.
        parts = [_FIELD_MESSAGE.match(p) for p in message.split("; ")]
        if not loc and all(parts):
            lines += [locate(root, source, parse_field_path(m.group(1)), m.group(2)) for m in parts]
        else:
            lines.append(locate(root, source, loc, message))
    return "\n".join(lines)
