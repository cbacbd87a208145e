"""The rule compiler's environment: crosswalks loaded, de-identification profiles and
UID/key mappers built once per `compile_rules`, shared by every action that names them."""
from __future__ import annotations

from pathlib import Path

from axiom_dagster.deid.profile import DeidOptions, DeidProfile
from axiom_dagster.deid.uidmap import UIDMapper, check_key, secret_from_env
from axiom_dagster.rules.paths import ConfigError, TagPath
from axiom_dagster.crosswalks.files import FileCrosswalk
from axiom_dagster.config.rules import RulesConfig


class CompileEnv:
    """Compile-time environment: loads crosswalks and builds profiles and key mappers once."""

    def __init__(self, config: RulesConfig, secret_key: bytes | None, base_dir: Path | None) -> None:
        self.config = config
        self.secret_key = check_key(secret_key) if secret_key is not None else None
        self.base_dir = base_dir
        self._crosswalks: dict[str, FileCrosswalk] = {}
        self._indexes: dict[tuple[str, tuple[str, ...]], dict] = {}
        self._profiles: dict[str, DeidProfile] = {}
        self._mappers: dict[str, UIDMapper] = {}

    def crosswalk(self, name: str) -> FileCrosswalk:
        if name not in self._crosswalks:
            self._crosswalks[name] = FileCrosswalk(name, self.config.crosswalks[name], self.base_dir)
        return self._crosswalks[name]

    def crosswalk_index(self, name: str, columns: tuple[str, ...]) -> dict:
        key = (name, columns)
        if key not in self._indexes:
            self._indexes[key] = self.crosswalk(name).index(columns)
        return self._indexes[key]

    def mapper(self, env_var: str) -> UIDMapper:
        if env_var not in self._mappers:
            key = self.secret_key if self.secret_key is not None else secret_from_env(env_var)
            self._mappers[env_var] = UIDMapper(key)
        return self._mappers[env_var]

    def profile(self, name: str) -> DeidProfile:
        if name not in self._profiles:
            spec = self.config.deid_profiles[name]
            options = DeidOptions(**{f: getattr(spec, f) for f in DeidOptions.__dataclass_fields__})
            extra = set()
            for i, text in enumerate(spec.extra_safe_private):
                try:
                    step = TagPath(text).steps[-1]
                except ConfigError as exc:
                    raise ConfigError(f"deid_profiles.{name}.extra_safe_private[{i}]: {exc}") from exc
                if step.tag is not None:
                    raise ConfigError(
                        f"deid_profiles.{name}.extra_safe_private[{i}]: use the private form "
                        f'(gggg,"CREATOR",xx), got {text!r}'
                    )
                extra.add((step.creator, step.group, step.offset))
            keep = set()
            for i, text in enumerate(spec.keep):
                try:
                    path = TagPath(text)
                except ConfigError as exc:
                    raise ConfigError(f"deid_profiles.{name}.keep[{i}]: {exc}") from exc
                if path.nested or path.steps[0].tag is None:
                    raise ConfigError(f"deid_profiles.{name}.keep[{i}]: give a keyword or tag, got {text!r}")
                keep.add(path.steps[0].tag)
            self._profiles[name] = DeidProfile(
                name=name,
                options=options,
                uids=self.mapper(spec.secret_env),
                patient_id=spec.patient_id,
                pseudonym_prefix=spec.pseudonym_prefix,
                date_shift_max_days=spec.date_shift_max_days,
                keep_references=spec.keep_references,
                extra_safe_private=frozenset(extra),
                modifying_system=self.config.modifying_system,
                keep=frozenset(keep),
            )
        return self._profiles[name]
