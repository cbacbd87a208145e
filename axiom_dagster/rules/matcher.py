"""All rules' conditions as one generated Python function (RuleEngine._fast_matcher).

The generated function evaluates the rules in the same order, with the same
short-circuits and gating (enabled, sources, schedules, first_match) as the interpreted
path in engine.py, and gives the same matches. `matcher_source(engine)` returns its text
(tests/rules/test_rules_fastpath.py checks it compiles and names every leaf).

What makes it cheaper than walking the condition trees:
- each distinct leaf is evaluated at most once per instance (a local `vN`), as the
  interned-leaf memo of the interpreted path does;
- each attribute path is read once per instance, into a local `aN` that every leaf on
  it shares (`readers.path_reader`: raw decoding, lookups with FastTag constants,
  i.e. without BaseTag's Python __eq__); a leaf on it is then a predicate on the
  decoded values (`Leaf.value_test`). `exists`/`not_exists` on a standard attribute
  are `K[k] in d`;
- a value leaf on one standard attribute with a raw decoder, on a private attribute,
  or on arrival metadata is one call `F[i](d, ctx)` (`fused.fused_test`: read,
  decode and test together; the common single ASCII value inline), falling back to
  the shared reader and value test;
- other leaves (deeper paths, exists on them) are their closures `Leaf.compiled()`;
- an all_matches ruleset is one tuple of its rules' tests, in order, and the matched
  rules are picked by itertools.compress (no branch and append per rule).
"""
from __future__ import annotations

import functools
import itertools
from typing import Any, Callable

from axiom_dagster.dicom import fastvalues as _fv
from axiom_dagster.rules.leaf import Leaf
from axiom_dagster.rules.nodes import All, AnyOf, Node, Not
from axiom_dagster.rules.readers import path_reader, single_tag
from axiom_dagster.rules.fused import fused_test


class _Generator:
    def __init__(self) -> None:
        self.leaves: dict[Leaf, int] = {}  # leaf -> N of its result local vN
        self.attrs: dict[tuple, int] = {}  # path steps -> N of its values local aN
        self.consts: list[Any] = []
        self.probes: dict[int, str] = {}  # tag -> its FastTag constant
        self.L: list[Any] = []  # per leaf: ctx -> bool (leaves that read their own path)
        self.T: list[Any] = []  # per leaf: (values, present, vr) -> bool (on a shared aN)
        self.A: list[Any] = []  # per attribute: (ds._dict, ctx) -> (values, present, vr)
        self.F: list[Any] = []  # per leaf: (ds._dict, ctx) -> bool (fused read and test)
        self.notes: list[str] = []
        self.readers: dict[tuple, int] = {}  # path steps -> how many distinct leaves read it

    def const(self, obj) -> str:
        self.consts.append(obj)
        return f"K[{len(self.consts) - 1}]"

    def probe(self, tag: int) -> str:
        if tag not in self.probes:
            self.probes[tag] = self.const(_fv.FastTag(tag))
        return self.probes[tag]

    def leaf(self, leaf: Leaf, known: set[str]) -> tuple[str, set[str]]:
        path = leaf.path
        if single_tag(path) and leaf.op in ("exists", "not_exists"):
            probe = self.probe(path.steps[0].tag)  # presence needs no value
            return f"({probe} {'in' if leaf.op == 'exists' else 'not in'} d)", set()
        i = self.leaves.get(leaf)
        if i is None:
            i = self.leaves[leaf] = len(self.leaves)
            fused = fused_test(leaf, shared=self.readers.get(path.steps if path else None, 0) > 1)
            read = path_reader(path) if path is not None and fused is None else None
            self.F.append(fused)
            if fused is not None:
                self.L.append(None)
                self.T.append(None)
            elif read is not None:
                if path.steps not in self.attrs:  # same steps, same values: one read
                    self.attrs[path.steps] = len(self.A)
                    self.A.append(read)
                    self.notes.append(f"a{self.attrs[path.steps]}: {path.text}")
                self.L.append(None)
                self.T.append(leaf.value_test())
            else:
                self.L.append(leaf.compiled())
                self.T.append(None)
            self.notes.append(f"v{i}: {leaf.label}")
        v = f"v{i}"
        if self.F[i] is not None:
            code = v if v in known else f"({v} if {v} is not None else ({v} := F[{i}](d, ctx)))"
            return code, {v}
        if self.L[i] is not None:
            code = v if v in known else f"({v} if {v} is not None else ({v} := L[{i}](ctx)))"
            return code, {v}
        j = self.attrs[path.steps]
        a = f"a{j}"
        if v in known:
            return v, {v, a}
        read = a if a in known else f"{a} if {a} is not None else ({a} := A[{j}](d, ctx))"
        return f"({v} if {v} is not None else ({v} := T[{i}]({read})))", {v, a}

    def expr(self, node: Node, known: set[str]) -> tuple[str, set[str]]:
        """(code, locals it always sets). `known`: the locals already set wherever
        this code runs; those are read without the `is not None` test."""
        if isinstance(node, Leaf):
            return self.leaf(node, known)
        if isinstance(node, Not):
            code, sets = self.expr(node.child, known)
            return f"(not {code})", sets
        if isinstance(node, (All, AnyOf)):
            if not node.children:
                return ("True" if isinstance(node, All) else "False"), set()
            # an operand runs only after all the ones before it have run
            codes, first, known = [], None, set(known)
            for child in node.children:
                code, sets = self.expr(child, known)
                codes.append(code)
                known |= sets
                first = sets if first is None else first
            return "(" + (" and " if isinstance(node, All) else " or ").join(codes) + ")", first
        return f"{self.const(node)}.eval(ctx)", set()

    def test(self, rule, known: set[str]) -> tuple[str, set[str]]:
        parts = self.gate(rule)
        if rule.condition is None:
            return " and ".join(parts) or "True", set()
        code, sets = self.expr(rule.condition, known)
        return " and ".join(parts + [code]), (set() if parts else sets)  # after a gate: maybe not run

    def gate(self, obj) -> list[str]:
        g = []
        if obj.sources is not None:
            g.append(f"meta.source in {self.const(obj.sources)}")
        if obj.schedule is not None:
            g.append(f"{self.const(obj.schedule)}.active(when)")
        return g

    def count_readers(self, node, seen: set) -> None:
        if isinstance(node, Leaf):
            if node not in seen and node.path is not None:
                seen.add(node)
                self.readers[node.path.steps] = self.readers.get(node.path.steps, 0) + 1
        elif isinstance(node, Not):
            self.count_readers(node.child, seen)
        elif isinstance(node, (All, AnyOf)):
            for child in node.children:
                self.count_readers(child, seen)

    def source(self, rulesets) -> str:
        seen: set = set()
        for rs in rulesets:
            for rule in rs.rules:
                if rule.condition is not None:
                    self.count_readers(rule.condition, seen)
        body: list[str] = []
        known: set[str] = set()  # locals set on every path through the code so far
        for rs in rulesets:
            if not rs.enabled:
                continue
            body.append(f"    # ruleset {rs.name!r} ({rs.mode})")
            rs_gate = self.gate(rs)
            ind = "    "
            inner = known
            if rs_gate:
                body.append(f"{ind}if {' and '.join(rs_gate)}:")
                ind += "    "
                inner = set(known)  # the block may not run: what it sets stays in it
            rules = [r for r in rs.rules if r.enabled]
            if rs.mode != "first_match" and len(rules) > 1:
                # every rule's test, in order, into one tuple; the matched rules picked
                # by compress (one C call instead of a branch and an append per rule)
                body.append(f"{ind}ext(compress({self.const(tuple(rules))}, (")
                for rule in rules:
                    code, sets = self.test(rule, inner)
                    inner |= sets
                    body.append(f"{ind}    {code},  # {rule.name!r}")
                body.append(f"{ind})))")
                continue
            chain = set(inner)
            for k, rule in enumerate(rules):
                if rs.mode == "first_match":
                    code, sets = self.test(rule, chain)
                    chain |= sets  # an elif runs after the tests before it
                    if k == 0:
                        inner |= sets
                    kw = "elif" if k else "if"
                else:
                    code, sets = self.test(rule, inner)
                    inner |= sets
                    kw = "if"
                body.append(f"{ind}{kw} {code}:")
                body.append(f"{ind}    ap({self.const(rule)})  # {rule.name!r}")
            if rs_gate and not rules:
                body.append(f"{ind}pass")
        lines = ["# " + note.replace("\n", " ") for note in self.notes]
        lines += ["def _match(F, L, T, A, K, ctx, meta, when):", "    d = ctx.ds._dict", "    m = []", "    ap = m.append", "    ext = m.extend"]
        if self.leaves:
            lines.append("    " + " = ".join(f"v{i}" for i in range(len(self.leaves))) + " = None")
        if self.attrs:
            lines.append("    " + " = ".join(f"a{i}" for i in range(len(self.attrs))) + " = None")
        lines += body
        lines.append("    return m")
        return "\n".join(lines) + "\n"


def generate(rulesets) -> tuple[str, Callable | None]:
    """(source, matcher): matcher(ctx, meta, when) -> matched rules, or None when the
    generated code does not compile (e.g. conditions nested beyond the parser's limits):
    then the interpreted path runs."""
    gen = _Generator()
    src = ""
    try:
        src = gen.source(rulesets)
        namespace: dict[str, Any] = {"compress": itertools.compress}
        exec(compile(src, "<axiom rules>", "exec"), namespace)
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return src, None
    tables = (tuple(gen.F), tuple(gen.L), tuple(gen.T), tuple(gen.A), tuple(gen.consts))
    return src, functools.partial(namespace["_match"], *tables)
