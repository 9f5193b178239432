"""Randomly wired graphs (Xie et al. 2019, as SERENITY used them): a random DAG from networkx as an IR graph.

The DAG is a Watts-Strogatz (`ws`: k=4, p=0.75) or Erdos-Renyi (`er`) graph whose edges run from the
lower node number to the higher (RandWire's conversion). Each DAG node is one operator whose output
width is drawn per node from `WIDTH_FACTORS` (times `channels`), so output sizes vary as in the
irregular cells SERENITY schedules. A node aggregates its inputs and transforms the result into its
own width: without predecessors it convolves the graph input (3x3); with one it convolves it (3x3);
with several of one width it adds them (RandWire's aggregation, a chain of adds) and convolves the sum
(3x3), unless it draws `CONCAT_P`; with several of different widths, or on that draw, it concatenates
them along channels and convolves the concatenation (1x1). The nodes nobody reads are aggregated the
same way into the output (`channels` wide). The node order is the DAG's numbering (the creation
order a model definition writes): a valid topological order that knows nothing of sizes.
"""

from __future__ import annotations

from typing import Literal

import networkx as nx
import numpy as np

from ..ir import Graph, GraphBuilder, Value, f32

WS_K, WS_P = 4, 0.75
"""Watts-Strogatz degree and rewiring probability of RandWire's WS(4, 0.75)."""

ER_P = 0.1
"""Edge probability of the Erdos-Renyi graphs (mean degree 3-6 at 30-60 nodes, RandWire's ER(0.2) has 6 at 32)."""

CONCAT_P = 0.25
"""Probability that an operator whose inputs share one width concatenates them (and convolves) instead of adding."""

WIDTH_FACTORS = (1, 2, 4)
"""Output width of each operator, in multiples of `channels`, drawn uniformly per node."""


def random_dag(n: int, kind: Literal["ws", "er"], seed: int) -> nx.DiGraph:
    """A random undirected graph on nodes 0..n-1 with every edge pointing to the higher number."""
    if kind == "ws":
        if n <= WS_K:
            raise ValueError(f"random_dag: a Watts-Strogatz graph needs more than {WS_K} nodes, got {n}")
        u = nx.connected_watts_strogatz_graph(n, WS_K, WS_P, seed=seed)
    elif kind == "er":
        u = nx.gnp_random_graph(n, ER_P, seed=seed)
    else:
        raise ValueError(f"random_dag: kind must be 'ws' or 'er', got {kind!r}")
    d = nx.DiGraph()
    d.add_nodes_from(range(n))
    d.add_edges_from((min(a, b), max(a, b)) for a, b in u.edges())
    return d


def random_wired_graph(n: int, kind: Literal["ws", "er"] = "ws", seed: int = 0, channels: int = 8,
                       size: int = 8) -> Graph:
    """An IR graph of `n` operators (convolutions after adds or concats) wired as `random_dag(n, kind, seed)`."""
    rng = np.random.default_rng(seed)
    dag = random_dag(n, kind, seed)
    b = GraphBuilder(f"randwire-{kind}{n}-s{seed}")
    x = b.input("x", f32[1, channels, size, size])

    def conv(v: Value, width: int, name: str, kernel: int = 3) -> Value:
        c_in = v.type.shape[1]
        w = rng.standard_normal((width, c_in, kernel, kernel)) / (kernel * np.sqrt(c_in))
        return b.conv2d(v, w.astype(np.float32), np.zeros(width, np.float32), pads=kernel // 2, name=name)

    def aggregate(values: list[Value], width: int, name: str) -> Value:
        if len(values) == 1:
            return conv(values[0], width, name)
        if len({v.type.shape[1] for v in values}) == 1 and rng.random() >= CONCAT_P:
            acc = values[0]
            for k, v in enumerate(values[1:]):
                acc = b.add(acc, v, name=f"{name}.sum{k}")
            return conv(acc, width, name)
        return conv(b.concat(values, axis=1, name=f"{name}.cat"), width, name, kernel=1)

    out: dict[int, Value] = {}
    for i in range(n):
        width = channels * int(rng.choice(WIDTH_FACTORS))
        out[i] = aggregate([out[p] for p in sorted(dag.predecessors(i))] or [x], width, f"n{i}")
    b.output(aggregate([out[i] for i in range(n) if dag.out_degree(i) == 0], channels, "y"))
    return b.build()
