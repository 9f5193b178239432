"""Keep a hardware-aware change only where the target's cost model predicts it does not make the graph slower.

A pass that decides from the cost model (`prune{pattern=auto}`, `quantize{precision=auto}`) records each
changed layer as a LayerChange: its predicted local gain and how to undo it. Layers predicted to gain
nothing are undone at once; at the end `revert_until_not_worse` prices the whole graph with `estimate`
(which also sees where the weights live and the schedule) and undoes layers, the least gainful first,
until the total is no higher than before the pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..backends.cost import CostError, Target, estimate, node_cost
from ..ir.graph import Graph, Node


@dataclass
class LayerChange:
    """One layer a pass changed: the predicted latency it saves on the target alone, and how to undo it."""

    name: str
    gain_s: float
    revert: Callable[[], None]


def nodes_latency(nodes: list[Node], target: Target) -> float | None:
    """Predicted latency of `nodes` on `target` priced one by one (None when one cannot be priced)."""
    try:
        return sum(node_cost(n, target).latency_s for n in nodes)
    except CostError:
        return None


def graph_latency(graph: Graph, target: Target) -> float | None:
    """`estimate`'s total latency of `graph` on `target` (None when a node cannot be priced)."""
    try:
        return estimate(graph, target).total.latency_s
    except CostError:
        return None


def revert_until_not_worse(graph: Graph, target: Target, before_s: float | None,
                           changes: list[LayerChange]) -> list[str]:
    """Undo `changes`, least predicted gain first, until the graph's estimate is no higher than `before_s`.

    Returns the names of the layers undone (none when the graph could not be priced before)."""
    if before_s is None:
        return []
    undone: list[str] = []
    pending = sorted(changes, key=lambda c: c.gain_s)
    while pending:
        now = graph_latency(graph, target)
        if now is not None and now <= before_s:
            break
        change = pending.pop(0)
        change.revert()
        undone.append(change.name)
    return undone


def remove_if_unused(graph: Graph, node: Node) -> None:
    """Drop `node` from `graph` when nothing reads its outputs (a widening step a reverted layer left behind)."""
    used = {id(v) for n in graph.nodes for v in n.inputs} | {id(v) for v in graph.outputs}
    if node in graph.nodes and not any(id(v) in used for v in node.outputs):
        graph.nodes.remove(node)
