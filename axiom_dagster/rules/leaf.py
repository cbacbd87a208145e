"""A compiled condition leaf: `attribute` or `meta`, operator, value (the comparison
semantics are in conditions.py). `_eval` is the reference; `compiled`, `value_test` and
`_predicate` are the specialised forms the generated matcher uses (matcher.py, fused.py)."""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from axiom_dagster.dicom import fastvalues as _fv
from axiom_dagster.config.rules import Condition
from axiom_dagster.rules.paths import ConfigError, TagPath
from axiom_dagster.rules.compare import _ORDER, _plain_target, _same, _to_float, normaliser
from axiom_dagster.rules.context import EvalContext
from axiom_dagster.rules.nodes import Node
from axiom_dagster.rules.readers import _reader, single_tag

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
    # it reads itself. tests/rules/test_rules_fastpath.py compares them on every operator/VR.
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
