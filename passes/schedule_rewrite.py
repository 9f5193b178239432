"""Rewrites that let a schedule free memory earlier (SERENITY's identity graph rewriting, Ahn et al. 2020).

Both compute the same function up to float reassociation, with the same multiply-adds:

- channel-wise partitioning (`PARTITION_RULES`): `conv2d(concat(x1, .., xn, axis=1), W, b)` becomes
  `conv2d(x1, W1, b) + conv2d(x2, W2) + ..` with `Wi` the slice of `W`'s input channels that `xi` fills.
  Each part is convolved as soon as it exists and can die at once, and the concatenation, as large as all
  its parts together, is never made.
- sums in production order (`SumChain`): a tree of adds of one type whose inner sums each have one
  reader is a sum of its terms in any order; `rechain` wires it as the chain that adds the terms in the
  order a schedule produces them, so each term dies right after it is made.

`rewrite_for_memory` partitions once, then alternates scheduling and re-chaining while the peak drops.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx

from ..ir.graph import Graph, Node, Value
from .rewrite import Const, Rewriter, Var, apply_rules, op, rules
from .schedule_search import MemorySchedule

REWRITE_ROUNDS = 6
"""Rounds of re-chaining and scheduling again, by default (they stop when re-chaining moves no term)."""


def _partition_conv(rw: Rewriter, cat: Value, w: Value, **_: Value) -> Value | None:
    """`conv2d(concat(parts), W, b)` as the sum of one convolution per part (the bias on the first)."""
    conv, join = rw.root, cat.producer
    assert join is not None and w.data is not None
    if conv.attrs["groups"] != 1 or join.attrs["axis"] % cat.type.rank != 1 or len(join.inputs) < 2:
        return None
    if not w.type.dtype.is_float or w.type.quant is not None:
        return None
    total, start = None, 0
    for k, part in enumerate(join.inputs):
        width = part.type.shape[1]
        weight = rw.const(w.data[:, start:start + width], f"{conv.name}.weight.part{k}")
        start += width
        bias = conv.inputs[2:3] if k == 0 else []
        y = rw.emit("conv2d", part, weight, *bias, **conv.attrs)
        total = y if total is None else rw.emit("add", total, y)
    return total


PARTITION_RULES = rules(
    ("partition-concat-conv",
     op("conv2d", op("concat", Var("first"), capture="cat", single_use=True, partial=True), Const("w"),
        partial=True),
     _partition_conv),
)
"""Channel-wise partitioning of a convolution over a concatenation of channels that nothing else reads."""


def _plain_add(node: Node | None) -> bool:
    """An add whose inputs all have its output's type (no broadcasting)."""
    return (node is not None and node.op == "add" and len(node.outputs) == 1
            and all(v.type == node.outputs[0].type for v in node.inputs))


@dataclass
class SumChain:
    """A tree of plain adds whose inner sums each have one reader: its adds (the root last) and its terms."""

    adds: list[Node]
    terms: list[Value]

    def rechain(self, position: dict[int, int]) -> bool:
        """Wire the adds as a chain over the terms in the order `position` produces them; True if that moved one."""
        terms = sorted(self.terms, key=lambda v: position.get(id(v.producer), -1))
        changed, total = False, terms[0]
        for node, term in zip(self.adds, terms[1:]):
            wired = [total, term]
            changed |= any(a is not b for a, b in zip(node.inputs, wired))
            node.inputs = wired
            total = node.outputs[0]
        return changed


def sum_chains(graph: Graph) -> list[SumChain]:
    """Every tree of two or more plain adds in `graph` whose inner sums each have one reader (an add of it)."""
    users = graph.users()
    outputs = {id(v) for v in graph.outputs}
    members = {id(n) for n in graph.nodes}

    def inner(v: Value) -> bool:
        readers = users.get(id(v), [])
        return (_plain_add(v.producer) and id(v.producer) in members and id(v) not in outputs
                and len(readers) == 1 and _plain_add(readers[0]) and readers[0].outputs[0].type == v.type)

    chains = []
    for node in graph.nodes:
        if not _plain_add(node) or inner(node.outputs[0]):
            continue
        adds, terms, stack = [], [], [node]
        while stack:
            n = stack.pop()
            adds.append(n)
            for v in n.inputs:
                if inner(v):
                    assert v.producer is not None
                    stack.append(v.producer)
                else:
                    terms.append(v)
        if len(adds) > 1:
            chains.append(SumChain(adds[::-1], terms))
    return chains


def topological_resort(graph: Graph, position: dict[int, int]) -> None:
    """Reorder `graph.nodes` topologically, each step the ready node earliest in `position`."""
    dag = graph.to_networkx()
    graph.nodes = list(nx.lexicographical_topological_sort(dag, key=lambda n: position[id(n)]))


@dataclass
class MemoryRewrite:
    """What `rewrite_for_memory` did: partitions by rule, sum chains, the round whose wiring was kept, its peak."""

    partitioned: Counter[str]
    chains: int
    rounds: int
    peak: int


def rewrite_for_memory(graph: Graph, schedule: Callable[[Graph], MemorySchedule],
                       rounds: int = REWRITE_ROUNDS) -> MemoryRewrite:
    """Partition convolutions of concatenations, then schedule and re-chain sums in production order for up to
    `rounds` rounds; leaves `graph` rewritten, wired and ordered as in the round of least peak."""
    partitioned = apply_rules(graph, PARTITION_RULES)
    chains = sum_chains(graph)
    adds = [n for c in chains for n in c.adds]
    found = schedule(graph)
    graph.nodes = [graph.nodes[i] for i in found.order]
    best, best_round = found.peak_after, 0
    kept = (list(graph.nodes), [list(n.inputs) for n in adds])
    for done in range(1, rounds + 1):
        position = {id(n): i for i, n in enumerate(graph.nodes)}
        if not any([c.rechain(position) for c in chains]):
            break
        topological_resort(graph, position)
        found = schedule(graph)
        graph.nodes = [graph.nodes[i] for i in found.order]
        if found.peak_after < best:  # a round that does not lower the peak may still lead to one that does
            best, best_round = found.peak_after, done
            kept = (list(graph.nodes), [list(n.inputs) for n in adds])
    graph.nodes = kept[0]
    for node, inputs in zip(adds, kept[1]):
        node.inputs = inputs
    return MemoryRewrite(partitioned, len(chains), best_round, best)
