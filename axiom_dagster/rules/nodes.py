"""Condition tree nodes: the evaluation interface and the all / any / not combinators."""
from __future__ import annotations

from axiom_dagster.rules.context import EvalContext

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
