"""Measured speed-ups of one rewritten layer on this machine, for passes that also predict them (prune).

A pass cannot run the JIT backends itself (passes sit below runtime in the layering); the caller hands it
`PassContext.measure`, a function giving the seconds one run of a graph takes (`runtime.graph_timer` makes
one for a backend). `layer_speedup` times a layer alone, once with its original weight and once with the
rewritten one, each as a one-node graph fed random inputs of its input types.
"""

from __future__ import annotations

from collections.abc import Callable

from ..ir.graph import Graph, Node, Value

GraphTimer = Callable[[Graph], float]
"""Seconds of one run of a graph on some backend of this machine (a median over repeats)."""


def layer_graph(node: Node, weight: Value) -> Graph:
    """`node` alone reading `weight` as input 1, its other computed inputs as graph inputs."""
    inputs: list[Value] = []
    ins = []
    for i, v in enumerate(node.inputs):
        if i == 1:
            ins.append(weight)
        elif v.is_constant:
            ins.append(v)
        else:
            fresh = Value(v.name, v.type)
            inputs.append(fresh)
            ins.append(fresh)
    out = Value(node.outputs[0].name, node.outputs[0].type)
    return Graph(f"{node.name}.alone", inputs, [out], [Node(node.op, ins, dict(node.attrs), [out])])


def layer_speedup(measure: GraphTimer, node: Node, before: Value, after: Value) -> tuple[float, float]:
    """(seconds with `before`, seconds with `after`) of `node` run alone by `measure`."""
    return measure(layer_graph(node, before)), measure(layer_graph(node, after))
