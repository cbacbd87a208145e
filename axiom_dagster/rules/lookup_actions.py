"""Actions that look values up: crosswalk (a lookup table) and standardize (AI answers).

- crosswalk: key = values at `match` paths (stripped text; folded when the crosswalk is
  case-insensitive) -> set `set` paths from the row. On a miss: quarantine (no copies),
  keep (no change), default (set `default` values) or live (ask the SQL source now; still
  missing -> quarantine). Every miss is recorded on the ActionRun for the missing-keys report.
- standardize: the attribute's value -> its controlled-vocabulary term from the answers the
  run resolved before processing (ai.standardize); a value without an answer is kept.
Both read in-memory maps built once at compile time, so the per-instance cost is a dict get.
"""
from __future__ import annotations

from typing import Any, Mapping

from pydicom import Dataset, config
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import PIXEL_KEYWORDS
from pydicom.tag import BaseTag

from axiom_dagster.config.rules import Action
from axiom_dagster.dicom.fastvalues import DECODERS, VR_VALUE_LITTLE, Fallback, FastTag, dataset_codec
from axiom_dagster.crosswalks.index import CrosswalkIndex
from axiom_dagster.crosswalks.misses import key_text
from axiom_dagster.rules.action_base import ActionRun, CompiledAction, _coerce, copy_element
from axiom_dagster.rules.attribute_actions import SetAction
from axiom_dagster.rules.paths import ConfigError, TagPath


# Text VRs whose raw decoding gives exactly the strings pydicom would (numbers excluded: a
# DS "1.50" must stay "1.50" in a key).
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UT"})


def _top_tag(path: TagPath) -> BaseTag | None:
    """The tag of a plain top-level standard path (no sequence, private block or index)."""
    step = path.steps[-1]
    return BaseTag(step.tag) if not path.nested and step.tag is not None and step.index is None else None


def _probe(tag: BaseTag | None) -> FastTag | None:
    """The key to look `tag` up in a Dataset's dict with (FastTag: compared in C)."""
    return FastTag(tag) if tag is not None else None


def read_text(path: TagPath, probe: int | None, ds: Dataset) -> str:
    """The values at `path` joined by backslashes, stripped; a raw top-level text element is
    decoded straight from its bytes (the warm-cache hot path), anything else via pydicom.
    `probe`: the FastTag of a plain top-level path, else None."""
    if probe is not None:
        elem = ds._dict.get(probe)
        if elem is None:
            return ""
        if elem.__class__ is RawDataElement:
            vr, data, little = VR_VALUE_LITTLE(elem)
            if vr in _TEXT_VRS and data is not None:
                if not data:
                    return ""
                try:
                    # The character set only decides how non-ASCII bytes decode: look it up then.
                    values = DECODERS[vr](data, little, None if data.isascii() else dataset_codec(ds))
                    return "\\".join(values).strip()
                except Fallback:
                    pass
    values, _, _ = path.values(ds)
    return "\\".join(str(v) for v in values).strip()


class ElementCache:
    """Elements pydicom built (converted and validated) for recent lookup results, handed out
    as copies. The same few values are set again and again (a vocabulary term; one patient's
    research ID across the instances of a study), and building a DataElement costs about ten
    times copying one. Bounded: cleared when full."""

    __slots__ = ("elements",)
    LIMIT = 1024

    def __init__(self) -> None:
        self.elements: dict[tuple, DataElement] = {}

    def element(self, tag: BaseTag, vr: str, value: str) -> DataElement:
        key = (tag, vr, value, config.settings.reading_validation_mode)
        proto = self.elements.get(key)
        if proto is None:
            proto = DataElement(tag, vr, value)
            if not isinstance(proto._value, str):  # a multi-value list is mutable: never shared
                return proto
            if len(self.elements) >= self.LIMIT:
                self.elements.clear()
            self.elements[key] = proto
        return copy_element(proto)

    def __reduce__(self):
        return ElementCache, ()  # pickled empty: each process fills its own


class TextPut:
    """Where a lookup result goes: a SetAction, plus for a plain top-level standard text
    attribute what the direct store needs (its tag, its FastTag probe, the element cache)."""

    __slots__ = ("setter", "tag", "probe", "direct", "elements")

    def __init__(self, setter: SetAction, elements: ElementCache) -> None:
        self.setter = setter
        tag = _top_tag(setter.path)
        self.tag = tag if setter.vr in _TEXT_VRS else None
        self.probe = _probe(self.tag)
        # all that Dataset.__setitem__ does for a standard, non-pixel, non-sequence element
        self.direct = self.tag is not None and not (self.tag & 0x10000 or self.tag in PIXEL_KEYWORDS)
        self.elements = elements

    def put(self, ds: Dataset, old: str | None, value: Any) -> bool:
        """Set a lookup result; a top-level standard attribute whose current text is known
        (`old`) is replaced directly (no decode-and-compare of the old element)."""
        if value.__class__ is not str:
            value = _coerce(self.setter.vr, value)
        tag = self.tag
        if tag is None or old is None or not isinstance(value, str):
            return self.setter.put_value(ds, value)
        if value == old:
            return False
        elem = self.elements.element(tag, self.setter.vr, value)
        if not self.direct:
            ds[tag] = elem
            return True
        d = ds._dict
        if self.probe in d:
            d[self.probe] = elem  # the dict keeps its own key
        else:
            d[tag] = elem  # a new key: a BaseTag, as Dataset.__setitem__ stores
        return True


class CrosswalkAction(CompiledAction):
    kind = "crosswalk"

    def __init__(self, name: str, match: Mapping[str, str], set_: Mapping[str, str], on_miss: str,
                 default: Mapping[str, Any] | None, index: CrosswalkIndex, case_insensitive: bool,
                 where: str, crosswalk=None) -> None:
        self.name = name
        self.columns = list(match.keys())
        self.match_paths = [TagPath(p) for p in match.values()]
        self.reads = [(p, _probe(_top_tag(p))) for p in self.match_paths]
        self.elements = ElementCache()
        # (put, row position, position in the key texts of the attribute it replaces or -1):
        # a setter that writes an attribute the key was read from knows its current text.
        match_tags = [_top_tag(p) for p in self.match_paths]
        self.puts = []
        for p, col in set_.items():
            put = TextPut(SetAction(TagPath(p), None, "", f"{where}.set.{p}"), self.elements)
            tag = _top_tag(put.setter.path)
            src = match_tags.index(tag) if tag is not None and tag in match_tags else -1
            self.puts.append((put, index.position(col), src))
        self.on_miss = on_miss
        self.defaults = [SetAction(TagPath(p), None, v, f"{where}.default.{p}") for p, v in (default or {}).items()]
        self.index = index
        self.ci = case_insensitive
        self.crosswalk = crosswalk if on_miss == "live" else None
        self.live_rows: dict[tuple, tuple | None] = {}  # per process: ask the source once per key

    def texts(self, ds: Dataset) -> list[str]:
        return [read_text(p, t, ds) for p, t in self.reads]

    def key(self, ds: Dataset) -> tuple[str, ...]:
        texts = self.texts(ds)
        return tuple(t.casefold() for t in texts) if self.ci else tuple(texts)

    def apply(self, ds: Dataset, run: ActionRun) -> bool:
        texts = [read_text(p, t, ds) for p, t in self.reads]
        key = tuple(t.casefold() for t in texts) if self.ci else tuple(texts)
        row = self.index.get(key)
        if row is None and self.crosswalk is not None:
            row = self._live(key, run)
        if row is None:
            return self._miss(ds, run, key)
        changed = False
        for put, pos, src in self.puts:
            changed |= put.put(ds, texts[src] if src >= 0 else None, row[pos])
        return changed

    def _live(self, key: tuple[str, ...], run: ActionRun) -> tuple | None:
        if key not in self.live_rows:
            self.live_rows[key] = self.crosswalk.live(self.columns, key)
        row = self.live_rows[key]
        if row is not None:
            run.misses.add(("crosswalk", self.name, key_text(key), "not in snapshot; found by live query"))
        return row

    def _miss(self, ds: Dataset, run: ActionRun, key: tuple[str, ...]) -> bool:
        run.misses.add(("crosswalk", self.name, key_text(key), f"no row (on_miss {self.on_miss})"))
        if self.on_miss in ("quarantine", "live"):
            # Column names only: the key values may identify the patient.
            run.quarantine_reason = f"crosswalk {self.name!r}: no row matches columns {self.columns}"
            return False
        if self.on_miss == "keep":
            return False
        changed = False
        for setter in self.defaults:
            changed |= setter.apply(ds, run)
        return changed


class StandardizeAction(CompiledAction):
    kind = "standardize"

    def __init__(self, path: TagPath, answers: dict[str, str | None], where: str) -> None:
        self.path = path
        self.probe = _probe(_top_tag(path))
        self.put = TextPut(SetAction(path, None, "", where), ElementCache())
        self.setter = self.put.setter
        self.answers = answers  # shared with ai.standardize, which fills it before the run

    def apply(self, ds: Dataset, run: ActionRun) -> bool:
        text = read_text(self.path, self.probe, ds)
        out = self.answers.get(text) if text else None
        if out is None or out == text:
            return False
        return self.put.put(ds, text, out)


def compile_lookup_action(act: Action, where: str, env) -> CompiledAction:
    if act.action == "standardize":
        return StandardizeAction(TagPath(act.attribute), env.ai_answers(act), where)
    cw = env.crosswalk(act.crosswalk)
    index = env.crosswalk_index(act.crosswalk, tuple(act.match.keys()))
    for column in act.set.values():
        if column not in cw.columns():
            raise ConfigError(f"{where}.set: crosswalk {act.crosswalk!r} has no column {column!r}")
    return CrosswalkAction(act.crosswalk, act.match, act.set, act.on_miss, act.default, index,
                           getattr(cw, "case_insensitive", False), where, crosswalk=cw)
