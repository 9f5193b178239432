"""Rewrite rules as data: `(pattern, function)` pairs run to a fixed point by one driver.

A pattern is a tree of `Op`, `Var` and `Const`. Named captures bind Values and become the
function's keyword arguments; the function gets a `Rewriter` first and returns the Value
that replaces the root, or None for no match. Rule sets combine with `+`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir.builder import as_constant_array
from ..ir.dtypes import dtype_from_numpy
from ..ir.graph import Graph, Node, Value
from ..ir.ops import get_op
from ..ir.text import format_node, format_type
from ..ir.types import TensorType


class RewriteError(RuntimeError):
    """A rule produced a replacement whose type differs from the value it replaces."""


class Pattern:
    """Base of pattern nodes."""


@dataclass(frozen=True)
class Var(Pattern):
    """Matches any value and captures it as `name`."""

    name: str


@dataclass(frozen=True)
class Const(Pattern):
    """Matches a constant (optionally one whose array satisfies `where`) and captures it."""

    name: str
    where: Callable[[np.ndarray], bool] | None = None


@dataclass(frozen=True)
class Op(Pattern):
    """Matches a value produced by op `op` whose inputs match `inputs` and attrs include `attrs`.

    `capture` binds the matched value; `single_use` requires it to have exactly one reader
    (so that rewriting it cannot duplicate work). Inputs may be fewer than the node's when
    `partial` is set (e.g. to match linear with or without bias).
    """

    op: str
    inputs: tuple[Pattern, ...] = ()
    attrs: tuple[tuple[str, Any], ...] = ()
    capture: str | None = None
    single_use: bool = False
    partial: bool = False


def op(name: str, *inputs: Pattern, capture: str | None = None, single_use: bool = False,
       partial: bool = False, **attrs: Any) -> Op:
    """Shorthand for `Op`: `op("mul", Var("x"), Const("one", is_ones))`."""
    return Op(name, tuple(inputs), tuple(sorted(attrs.items())), capture, single_use, partial)


@dataclass(frozen=True)
class Rule:
    """A named rewrite: when `pattern` matches, `fn(rewriter, **captures)` gives the replacement."""

    name: str
    pattern: Pattern
    fn: Callable[..., Value | None]


@dataclass(frozen=True)
class RuleSet:
    """An ordered collection of rules; `a + b` concatenates."""

    rules: tuple[Rule, ...] = ()

    def __add__(self, other: RuleSet | Rule) -> RuleSet:
        more = (other,) if isinstance(other, Rule) else other.rules
        return RuleSet(self.rules + more)

    def __iter__(self) -> Any:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)


def rules(*items: Rule | tuple[str, Pattern, Callable[..., Value | None]]) -> RuleSet:
    """Build a RuleSet from Rules or `(name, pattern, fn)` triples."""
    return RuleSet(tuple(r if isinstance(r, Rule) else Rule(*r) for r in items))


@dataclass
class _Uses:
    counts: dict[int, int] = field(default_factory=dict)

    @classmethod
    def of(cls, g: Graph) -> _Uses:
        c: dict[int, int] = {}
        for n in g.nodes:
            for v in n.inputs:
                c[id(v)] = c.get(id(v), 0) + 1
        for v in g.outputs:
            c[id(v)] = c.get(id(v), 0) + 1
        return cls(c)

    def get(self, v: Value) -> int:
        return self.counts.get(id(v), 0)


class Rewriter:
    """Handed to rule functions: emits new nodes just before the matched root node."""

    def __init__(self, graph: Graph, root: Node, uses: _Uses) -> None:
        self.graph = graph
        self.root = root
        self.uses = uses
        self.emitted: list[Node] = []
        self.issued: set[str] = set()

    def emit(self, op_name: str, *inputs: Value, **attrs: Any) -> Value:
        """Insert `op_name(inputs) {attrs}` before the root; returns its output."""
        opdef = get_op(op_name)
        attrs = opdef.normalize_attrs(attrs)
        (t,) = opdef.infer([v.type for v in inputs], attrs)
        out = Value(self.graph.fresh_name(f"{self.root.name}.{op_name}"), t)
        node = Node(op_name, list(inputs), attrs, [out])
        self.graph.insert_before(self.root, node)
        self.emitted.append(node)
        for v in inputs:
            self.uses.counts[id(v)] = self.uses.get(v) + 1
        return out

    def const(self, array: Any, name: str | None = None) -> Value:
        """A new constant holding `array` (float64 becomes f32)."""
        a = np.array(as_constant_array(array), copy=True, order="C")
        base = name or f"{self.root.name}.const"
        fresh, k = self.graph.fresh_name(base), 1
        while fresh in self.issued:  # constants made by this rewrite are not in the graph yet
            fresh, k = self.graph.fresh_name(f"{base}_{k}"), k + 1
        self.issued.add(fresh)
        return Value(fresh, TensorType(a.shape, dtype_from_numpy(a.dtype)), a)

    def uses_of(self, v: Value) -> int:
        """How many node inputs and graph outputs read `v` right now."""
        return self.uses.get(v)


def match(p: Pattern, v: Value, uses: _Uses, graph_nodes: set[int], out: dict[str, Value]) -> bool:
    """Match pattern `p` at value `v`, filling `out` with captures; False when it does not fit."""
    if isinstance(p, Var):
        return _bind(out, p.name, v)
    if isinstance(p, Const):
        if v.data is None or (p.where is not None and not p.where(v.data)):
            return False
        return _bind(out, p.name, v)
    assert isinstance(p, Op)
    n = v.producer
    if n is None or id(n) not in graph_nodes or n.op != p.op or len(n.outputs) != 1:
        return False
    if any(n.attrs.get(k) != want for k, want in p.attrs):
        return False
    if p.single_use and uses.get(v) != 1:
        return False
    if len(n.inputs) != len(p.inputs) and not (p.partial and len(n.inputs) >= len(p.inputs)):
        return False
    for sub, inp in zip(p.inputs, n.inputs):
        if not match(sub, inp, uses, graph_nodes, out):
            return False
    return p.capture is None or _bind(out, p.capture, v)


def _bind(out: dict[str, Value], name: str, v: Value) -> bool:
    if name in out:
        return out[name] is v  # the same name twice must be the same value
    out[name] = v
    return True


def apply_rules(graph: Graph, ruleset: RuleSet | Iterable[Rule], max_sweeps: int = 50) -> Counter[str]:
    """Rewrite `graph` in place until no rule matches; returns hits per rule name."""
    rule_list = list(ruleset)
    hits: Counter[str] = Counter()
    for _ in range(max_sweeps):
        graph.remove_dead_nodes()
        uses = _Uses.of(graph)
        changed = False
        members = {id(n) for n in graph.nodes}
        for node in list(graph.nodes):
            if len(node.outputs) != 1 or uses.get(node.outputs[0]) == 0:
                continue
            root = node.outputs[0]
            for rule in rule_list:
                caps: dict[str, Value] = {}
                if not match(rule.pattern, root, uses, members, caps):
                    continue
                rw = Rewriter(graph, node, uses)
                new = rule.fn(rw, **caps)
                if new is None:
                    for n in rw.emitted:
                        graph.nodes.remove(n)
                    continue
                if new is root:
                    continue
                if new.type.shape != root.type.shape or new.type.dtype != root.type.dtype:
                    raise RewriteError(f"rule {rule.name!r} replaced {format_node(node)} with a value of "
                                       f"type {format_type(new.type)}")
                members.update(id(n) for n in rw.emitted)
                uses.counts[id(new)] = uses.get(new) + uses.get(root)
                uses.counts[id(root)] = 0
                graph.replace_all_uses(root, new)
                if new.producer is not None and any(new.producer is n for n in rw.emitted):
                    new.name, root.name = root.name, f"{root.name}.replaced"
                hits[rule.name] += 1
                changed = True
                break
        if not changed:
            graph.remove_dead_nodes()
            return hits
    raise RewriteError(f"rules did not reach a fixed point in {max_sweeps} sweeps: {dict(hits)}")


def format_hits(hits: Counter[str]) -> str:
    """`rule-a x3, rule-b x1` (or `no rule matched`)."""
    if not hits:
        return "no rule matched"
    return ", ".join(f"{k} x{v}" for k, v in sorted(hits.items()))


COMMUTATIVE_OPS = ("add", "mul", "maximum", "minimum")


def commutations(p: Pattern, ops: tuple[str, ...] = COMMUTATIVE_OPS) -> list[Pattern]:
    """Every variant of `p` with the operands of its commutative binary ops in either order."""
    if not isinstance(p, Op):
        return [p]
    variants: list[tuple[Pattern, ...]] = [()]
    for sub in p.inputs:
        variants = [v + (s,) for v in variants for s in commutations(sub, ops)]
    out = []
    for ins in variants:
        out.append(Op(p.op, ins, p.attrs, p.capture, p.single_use, p.partial))
        if p.op in ops and len(ins) == 2 and ins[0] != ins[1]:
            out.append(Op(p.op, (ins[1], ins[0]), p.attrs, p.capture, p.single_use, p.partial))
    return out
