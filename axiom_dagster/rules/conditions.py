"""Compiled conditions: `compile_condition` turns a config condition tree into nodes
(nodes.py: all/any/not; leaf.py: one operator on an attribute or arrival metadata),
evaluated against an `EvalContext` (context.py) with values read by readers.py and
normalised by compare.py.

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

from axiom_dagster.config.rules import Condition
from axiom_dagster.rules.paths import ConfigError
from axiom_dagster.rules.leaf import Leaf
from axiom_dagster.rules.nodes import All, AnyOf, Node, Not


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
