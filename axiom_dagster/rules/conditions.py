"""Compiled conditions: leaves, combinators, normalisation and value readers.

Comparison semantics (documented for users in the module, tested in tests/):
- A missing attribute, or one with an empty value, has no values: every operator is false
  on it except `ne`, `not_in` and `not_exists`, which are true.
- `match: any` (default) needs one value to satisfy the operator, `match: all` every value.
- gt/lt/ge/le compare numbers for numeric VRs (IS, DS, US, ...), dates and times for DA,
  TM and DT (partial values such as "1230" are padded; DT with an offset compares in UTC),
  numbers again for text that parses as numbers on both sides, and text otherwise.
- `regex` searches (re.search); anchor with ^ and $ for a full match.
- `case_insensitive` applies to eq, ne, contains, startswith, endswith, regex, in, not_in.
Conditions compile once into small picklable objects; regexes and paths are compiled then.
"""
from __future__ import annotations

import ipaddress
import operator
import re
import struct
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from pydicom import Dataset
from pydicom.dataelem import RawDataElement

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.dicom import fastvalues as _fv
from axiom_dagster.config.rules import Condition
from axiom_dagster.rules.paths import ConfigError, TagPath, element_values


# ---------------------------------------------------------------------------------------
# Normalisation for ordered comparisons
_NUMERIC_VRS = {"IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "SV", "UV", "OF", "OD"}
_DT_RE = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$"
)


def _norm_da(v: Any) -> str | None:
    if isinstance(v, datetime):
        return v.strftime("%Y%m%d")
    if isinstance(v, date):
        return v.strftime("%Y%m%d")
    s = str(v).strip().replace("-", "").replace(".", "")
    return s if len(s) == 8 and s.isdigit() else None


def _norm_tm(v: Any) -> str | None:
    if v.__class__ is str:  # the common case
        s = v.strip().replace(":", "")
    elif isinstance(v, time):
        return v.strftime("%H%M%S.%f")
    else:
        s = str(v).strip().replace(":", "")
    main, _, frac = s.partition(".")
    if not main.isdigit() or len(main) not in (2, 4, 6) or (frac and not frac.isdigit()):
        return None
    return main.ljust(6, "0") + "." + frac.ljust(6, "0")[:6]


def _norm_dt(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).replace(tzinfo=None) if v.tzinfo else v
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day)
    s = str(v).strip().replace("-", "", 2) if str(v).count("-") >= 2 else str(v).strip()
    s = s.replace(":", "").replace("T", "").replace(" ", "")
    m = _DT_RE.match(s)
    if not m:
        return None
    y, mo, d, h, mi, sec, frac, off = m.groups()
    try:
        dt = datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(sec or 0),
                      int((frac or "0").ljust(6, "0")))
    except ValueError:
        return None
    if off:
        sign = 1 if off[0] == "+" else -1
        dt -= sign * timedelta(hours=int(off[1:3]), minutes=int(off[3:5]))
    return dt


def _to_float(v: Any) -> float | None:
    if v.__class__ is str:  # the common case (float() strips whitespace as str.strip() does)
        try:
            return float(v)
        except ValueError:
            return None
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v).strip())
    except ValueError:
        return None


def normaliser(vr: str | None):
    if vr == "DA":
        return _norm_da
    if vr == "TM":
        return _norm_tm
    if vr == "DT":
        return _norm_dt
    if vr in _NUMERIC_VRS:
        return _to_float
    return None


# ---------------------------------------------------------------------------------------
# Compiled conditions
_UNSET = object()


class EvalContext:
    """One instance's evaluation state: the dataset, arrival metadata, a value cache."""

    __slots__ = ("ds", "meta", "_cache", "results", "raw_ok", "codec")

    def __init__(self, ds: Dataset, meta: ArrivalMeta) -> None:
        self.ds = ds
        self.meta = meta
        self.raw_ok = _fv.pydicom_defaults()  # raw decoding gives what pydicom gives
        self.codec: Any = _UNSET  # the dataset's text codec (`_codec()`), looked up once
        self._cache: dict[str, tuple[list[Any], bool, str | None]] = {}
        # Leaf results by leaf object: identical leaves are interned at compile time, so
        # a condition shared by many rules is evaluated once per instance.
        self.results: dict[Node, bool] = {}

    def values(self, path: TagPath) -> tuple[list[Any], bool, str | None]:
        hit = self._cache.get(path.text)
        if hit is None:
            hit = None
            if self.raw_ok:
                try:
                    hit = self._fast(path)
                except (_fv.Fallback, struct.error, IndexError, ValueError):
                    hit = None
            if hit is None:
                hit = path.values(self.ds)
            self._cache[path.text] = hit
        return hit

    def _codec(self) -> str | None:
        codec = self.codec
        if codec is _UNSET:
            codec = self.codec = _fv.dataset_codec(self.ds)
        return codec

    def _fast(self, path: TagPath) -> tuple[list[Any], bool, str | None] | None:
        """The values from raw elements (fastvalues.py); None: use pydicom."""
        steps = path.steps
        d = self.ds._dict
        if len(steps) == 1:
            step = steps[0]
            tag = step.tag
            if tag is None:
                key = ("creator", step.group, step.creator)
                block = self._cache.get(key, False)
                if block is False:
                    block = self._cache[key] = _fv.creator_block(self.ds, step.group, step.creator, None)
                if block is None:
                    return [], False, path.vr
                tag = (step.group << 16) | (block << 8) | step.offset
            elem = d.get(tag)
            if elem is None:
                return [], False, path.vr
            if elem.__class__ is RawDataElement:
                values, vr = _fv.raw_values(elem, self._codec())
            else:
                vr = elem.VR
                if vr == "SQ":
                    return None
                values = element_values(elem.value)
            if isinstance(step.index, int):
                values = values[step.index : step.index + 1]
            return values, True, vr
        if len(steps) == 2 and steps[0].tag is not None and steps[1].tag is not None:
            first = steps[0]
            elem = d.get(first.tag)
            if elem is None:
                return [], False, path.vr
            if elem.__class__ is not RawDataElement:
                return None
            values, found, vr = _fv.nested_values(elem, first.index, steps[1].tag, steps[1].index, self._codec())
            return values, found, (vr if found else path.vr)
        return None


class Node:
    def eval(self, ctx: EvalContext) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def explain(self, ctx: EvalContext) -> tuple[bool, list[str]]:
        """Result plus, when false, the leaves that failed (for `axiom rules test`)."""
        raise NotImplementedError


class All(Node):
    __slots__ = ("children",)

    def __init__(self, children: list[Node]) -> None:
        self.children = children

    def eval(self, ctx):
        for c in self.children:
            if not c.eval(ctx):
                return False
        return True

    def explain(self, ctx):
        reasons: list[str] = []
        ok = True
        for c in self.children:
            r, why = c.explain(ctx)
            if not r:
                ok = False
                reasons.extend(why)
        return ok, reasons


class AnyOf(Node):
    __slots__ = ("children",)

    def __init__(self, children: list[Node]) -> None:
        self.children = children

    def eval(self, ctx):
        for c in self.children:
            if c.eval(ctx):
                return True
        return False

    def explain(self, ctx):
        reasons: list[str] = []
        for c in self.children:
            r, why = c.explain(ctx)
            if r:
                return True, []
            reasons.extend(why)
        return False, ["none of: " + " | ".join(reasons)]


class Not(Node):
    __slots__ = ("child", "label")

    def __init__(self, child: Node, label: str) -> None:
        self.child = child
        self.label = label

    def eval(self, ctx):
        return not self.child.eval(ctx)

    def explain(self, ctx):
        if self.child.eval(ctx):
            return False, [f"not ({self.label}) failed: inner condition matched"]
        return True, []


_NEGATIVE = {"ne", "not_in", "not_exists"}


class Leaf(Node):
    """attribute or meta op value."""

    __slots__ = ("path", "meta", "op", "target", "ci", "match_all", "regex", "networks", "_norm", "label")

    def __init__(self, cond: Condition, where: str) -> None:
        self.path = TagPath(cond.attribute) if cond.attribute is not None else None
        self.meta = cond.meta
        self.op = cond.op
        self.ci = cond.case_insensitive
        self.match_all = cond.match == "all"
        self.target = cond.value
        self.regex = None
        self.networks = None
        self._norm: dict[str | None, Any] = {}
        subject = cond.attribute if cond.attribute is not None else f"meta.{cond.meta}"
        self.label = f"{subject} {cond.op}" + ("" if cond.value is None else f" {cond.value!r}")
        if self.op == "regex":
            try:
                self.regex = re.compile(str(cond.value), re.I if self.ci else 0)
            except re.error as exc:
                raise ConfigError(f"{where}.value: invalid regex: {exc}") from exc
        if self.op == "cidr":
            nets = cond.value if isinstance(cond.value, list) else [cond.value]
            try:
                self.networks = [ipaddress.ip_network(str(n), strict=False) for n in nets]
            except ValueError as exc:
                raise ConfigError(f"{where}.value: {exc}") from exc
        if self.op in ("in", "not_in"):
            self.target = [self._fold(str(v)) for v in cond.value]
        elif self.op in ("eq", "ne", "contains", "startswith", "endswith") and not isinstance(cond.value, (int, float)):
            self.target = self._fold(_plain_target(cond.value))

    def _fold(self, s: str) -> str:
        return s.casefold() if self.ci else s

    def _values(self, ctx: EvalContext) -> tuple[list[Any], bool, str | None]:
        if self.path is not None:
            return ctx.values(self.path)
        v = getattr(ctx.meta, self.meta)
        return ([] if v in (None, "") else [v]), v is not None, None

    def eval(self, ctx: EvalContext) -> bool:
        hit = ctx.results.get(self)
        if hit is None:
            hit = ctx.results[self] = self._eval(ctx)
        return hit

    def _eval(self, ctx: EvalContext) -> bool:
        values, present, vr = self._values(ctx)
        op = self.op
        if op == "exists":
            return present
        if op == "not_exists":
            return not present
        if not values:
            return op in _NEGATIVE
        test = self._test
        if self.match_all:
            return all(test(v, vr) for v in values)
        return any(test(v, vr) for v in values)

    def _ordered_target(self, vr: str | None, norm):
        key = vr
        if key not in self._norm:
            self._norm[key] = norm(self.target)
        return self._norm[key]

    def _test(self, v: Any, vr: str | None) -> bool:
        op = self.op
        if op in ("eq", "ne"):
            if isinstance(self.target, (int, float)) and not isinstance(self.target, bool):
                f = _to_float(v)
                result = f is not None and f == float(self.target)
            elif vr in ("DA", "TM", "DT"):
                norm = normaliser(vr)
                a, b = norm(v), self._ordered_target(vr, norm)
                result = a is not None and a == b if b is not None else self._fold(str(v)) == self.target
            else:
                result = self._fold(str(v).strip()) == self.target
            return result if op == "eq" else not result
        if op in ("gt", "lt", "ge", "le"):
            norm = normaliser(vr)
            if norm is not None:
                a, b = norm(v), self._ordered_target(vr, norm)
            else:
                a, b = _to_float(v), _to_float(self.target)
                if a is None or b is None:
                    a, b = str(v), str(self.target)
            if a is None or b is None:
                return False
            try:
                return {"gt": a > b, "lt": a < b, "ge": a >= b, "le": a <= b}[op]
            except TypeError:
                return False
        s = self._fold(str(v))
        if op == "contains":
            return self.target in s
        if op == "startswith":
            return s.startswith(self.target)
        if op == "endswith":
            return s.endswith(self.target)
        if op == "regex":
            return self.regex.search(str(v)) is not None
        if op == "in":
            return s.strip() in self.target
        if op == "not_in":
            return s.strip() not in self.target
        if op == "cidr":
            try:
                ip = ipaddress.ip_address(str(v))
            except ValueError:
                return False
            return any(ip in n for n in self.networks)
        raise AssertionError(op)

    # -- specialised form (the generated matcher, matcher.py) ---------------------------
    # `compiled()` gives a closure equal to `_eval` (the reference, kept for explain and
    # tests): the path read by `path_reader` (standard, private and Seq[..].X paths),
    # and `value_test`: the operator, case folding and constants resolved once, per VR,
    # into a predicate on one value. The generated matcher calls `value_test` on values
    # it reads itself. tests/test_rules_fastpath.py compares them on every operator/VR.
    def compiled(self):
        """ctx -> bool, the same as `_eval(ctx)`."""
        if self.op in ("exists", "not_exists"):
            want = self.op == "exists"
            if single_tag(self.path):
                tag = _fv.FastTag(self.path.steps[0].tag)  # presence never needs the value
                return (lambda ctx: tag in ctx.ds._dict) if want else (lambda ctx: tag not in ctx.ds._dict)
        test = self.value_test()
        if self.path is None:
            values = self._values
            return lambda ctx: test(values(ctx))
        read = _reader(self.path)
        return lambda ctx: test(read(ctx))

    def value_test(self):
        """(values, present, vr) -> bool, the same as `_eval` on those values."""
        if self.op == "exists":
            return lambda hit: hit[1]
        if self.op == "not_exists":
            return lambda hit: not hit[1]
        empty = self.op in _NEGATIVE
        match_all = self.match_all
        preds: dict[str | None, Any] = {}

        def test(hit):
            values, _, vr = hit
            if not values:
                return empty
            pred = preds.get(vr)
            if pred is None:
                pred = preds[vr] = self._predicate(vr)
            if len(values) == 1:
                return pred(values[0])
            return all(map(pred, values)) if match_all else any(map(pred, values))
        return test

    def _predicate(self, vr: str | None):
        """value -> bool, the same as `_test(value, vr)`, for one VR."""
        op, target = self.op, self.target
        fold = str.casefold if self.ci else _same
        if op in ("eq", "ne"):
            if isinstance(target, (int, float)) and not isinstance(target, bool):
                ft = float(target)

                def eq(v):
                    f = _to_float(v)
                    return f is not None and f == ft
            elif vr in ("DA", "TM", "DT"):
                norm = normaliser(vr)
                b = self._ordered_target(vr, norm)
                if b is None:
                    eq = lambda v: fold(str(v)) == target  # noqa: E731
                else:
                    eq = lambda v: (a := norm(v)) is not None and a == b  # noqa: E731
            elif self.ci:
                eq = lambda v: str(v).strip().casefold() == target  # noqa: E731
            else:
                eq = lambda v: str(v).strip() == target  # noqa: E731
            return eq if op == "eq" else (lambda v: not eq(v))
        if op in _ORDER:
            cmp = _ORDER[op]
            norm = normaliser(vr)
            if norm is not None:
                b = self._ordered_target(vr, norm)
                if b is None:
                    return lambda v: False
                return lambda v: (a := norm(v)) is not None and cmp(a, b)
            bt, st = _to_float(target), str(target)

            def ordered(v):
                a = _to_float(v)
                if a is None or bt is None:
                    return cmp(str(v), st)  # text order when either side is not a number
                return cmp(a, bt)
            return ordered
        if op == "contains":
            return lambda v: target in fold(str(v))
        if op == "startswith":
            return lambda v: fold(str(v)).startswith(target)
        if op == "endswith":
            return lambda v: fold(str(v)).endswith(target)
        if op == "regex":
            search = self.regex.search
            return lambda v: search(str(v)) is not None
        if op in ("in", "not_in"):
            members = frozenset(target)  # folded strings: set and list membership agree
            if op == "in":
                return lambda v: fold(str(v)).strip() in members
            return lambda v: fold(str(v)).strip() not in members
        if op == "cidr":
            # Arrival metadata repeats (a few senders): remember the answer per address.
            seen: dict[str, bool] = {}

            def cidr(v):
                key = str(v)
                hit = seen.get(key)
                if hit is None:
                    if len(seen) >= 4096:
                        seen.clear()
                    hit = seen[key] = self._test(v, vr)
                return hit
            return cidr
        return lambda v: self._test(v, vr)

    def explain(self, ctx):
        if self.eval(ctx):
            return True, []
        values, present, _ = self._values(ctx)
        shown = "missing" if not present else repr(values[:5])
        return False, [f"{self.label} (actual: {shown})"]


_ORDER = {"gt": operator.gt, "lt": operator.lt, "ge": operator.ge, "le": operator.le}


def _same(s: str) -> str:
    return s


_MISSING = object()


def single_tag(path: TagPath | None) -> bool:
    """A path to one standard top-level attribute."""
    return path is not None and len(path.steps) == 1 and path.steps[0].tag is not None


_READ_ERRORS = (_fv.Fallback, struct.error, IndexError, ValueError)


def path_reader(path: TagPath):
    """(ds._dict, ctx) -> (values, present, vr), the same as `ctx.values(path)`, for the
    common paths: one standard attribute, one private attribute, `Seq[*].X` or `Seq[n].X`
    with standard tags. None for other paths.

    Raw elements are decoded straight from their bytes (fastvalues.py), with FastTag
    lookups built here once; converted elements, values the decoders refuse, and
    non-default pydicom settings go through `ctx.values`. No cache: the generated
    matcher keeps each result in a local (`_reader` adds the context's cache).
    """
    steps = path.steps
    if len(steps) == 1 and steps[0].tag is not None:
        return _standard_reader(path)
    if len(steps) == 1:
        return _private_reader(path)
    if len(steps) == 2 and steps[0].tag is not None and steps[1].tag is not None:
        return _nested_reader(path)
    return None


def _standard_reader(path: TagPath):
    step = path.steps[0]
    probe, dict_vr, index = _fv.FastTag(step.tag), path.vr, step.index
    decoders, fields = _fv.DECODERS, _fv.VR_VALUE_LITTLE
    dict_dec = decoders.get(dict_vr)  # None for UN, ambiguous VRs and the undecoded ones

    def read(d, ctx):
        elem = d.get(probe)
        if elem is None:
            return [], False, dict_vr
        if elem.__class__ is RawDataElement and ctx.raw_ok:
            vr, data, little = fields(elem)
            if not vr or vr == dict_vr:  # implicit VR: the dictionary's
                vr, dec = dict_vr, dict_dec
            else:
                dec = decoders.get(vr)
            if dec is not None and data is not None:
                codec = ctx.codec
                if codec is _UNSET:
                    codec = ctx._codec()
                try:
                    values = dec(data, little, codec) if data else []
                except _READ_ERRORS:
                    return ctx.values(path)
                if index is not None and index != "*":
                    values = values[index : index + 1]
                return values, True, vr
        return ctx.values(path)
    return read


def _private_reader(path: TagPath):
    # As EvalContext._fast: the creator's block (shared by the paths of one creator,
    # in the context's cache), then the element in it.
    step = path.steps[0]
    group, creator, offset, index, dict_vr = step.group, step.creator, step.offset, step.index, path.vr
    key = ("creator", group, creator)
    probes: dict[int, Any] = {}  # block -> FastTag of the element

    def read(d, ctx):
        if not ctx.raw_ok:
            return ctx.values(path)
        cache = ctx._cache
        try:
            block = cache.get(key, False)
            if block is False:
                block = cache[key] = _fv.creator_block(ctx.ds, group, creator, None)
            if block is None:
                return [], False, dict_vr
            probe = probes.get(block)
            if probe is None:
                probe = probes[block] = _fv.FastTag((group << 16) | (block << 8) | offset)
            elem = d.get(probe)
            if elem is None:
                return [], False, dict_vr
            if elem.__class__ is not RawDataElement:
                return ctx.values(path)
            values, vr = _fv.raw_values(elem, ctx._codec())
        except _READ_ERRORS:
            return ctx.values(path)
        if isinstance(index, int):
            values = values[index : index + 1]
        return values, True, vr
    return read


def _nested_reader(path: TagPath):
    first, last = path.steps
    probe, want, dict_vr = _fv.FastTag(first.tag), last.tag, path.vr

    def read(d, ctx):
        elem = d.get(probe)
        if elem is None:
            return [], False, dict_vr
        if elem.__class__ is not RawDataElement or not ctx.raw_ok:
            return ctx.values(path)
        try:
            values, found, vr = _fv.nested_values(elem, first.index, want, last.index, ctx._codec())
        except _READ_ERRORS:
            return ctx.values(path)
        return values, found, (vr if found else dict_vr)
    return read


def _reader(path: TagPath):
    """ctx -> (values, present, vr), the same as `ctx.values(path)`: `path_reader`
    with the context's cache, or `ctx.values` for the paths it does not read."""
    read = path_reader(path)
    if read is None:
        return lambda ctx: ctx.values(path)
    text = path.text

    def cached(ctx):
        cache = ctx._cache
        hit = cache.get(text)
        if hit is None:
            hit = cache[text] = read(ctx.ds._dict, ctx)
        return hit
    return cached


def _plain_target(v: Any) -> str:
    if isinstance(v, datetime):
        return v.strftime("%Y%m%d%H%M%S")
    if isinstance(v, date):
        return v.strftime("%Y%m%d")
    return str(v)


def compile_condition(cond: Condition | None, where: str, interned: dict | None = None) -> Node | None:
    """Compile a condition tree; pass one `interned` dict per engine to share leaves."""
    if cond is None:
        return None
    if interned is None:
        interned = {}
    if cond.all is not None:
        return All([compile_condition(c, f"{where}.all[{i}]", interned) for i, c in enumerate(cond.all)])
    if cond.any is not None:
        return AnyOf([compile_condition(c, f"{where}.any[{i}]", interned) for i, c in enumerate(cond.any)])
    if cond.not_ is not None:
        inner = compile_condition(cond.not_, f"{where}.not", interned)
        return Not(inner, getattr(inner, "label", "..."))
    key = cond.model_dump_json()
    if key in interned:
        return interned[key]
    try:
        leaf = interned[key] = Leaf(cond, where)
        return leaf
    except ConfigError as exc:
        if str(exc).startswith(where):
            raise
        raise ConfigError(f"{where}.attribute: {exc}") from exc
