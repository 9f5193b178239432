"""Randomly wired graphs (Xie et al. 2019, as SERENITY used them): a random DAG from networkx as an IR graph.

The DAG is a Watts-Strogatz (`ws`: k=4, p=0.75) or Erdos-Renyi (`er`) graph whose edges run from the
lower node number to the higher. Each DAG node is one operator: a node without predecessors is a 3x3
convolution of the input; a node with one is a 3x3 convolution of it; a node with several adds them
(RandWire's aggregation; a chain of adds) or, with probability `CONCAT_P`, concatenates them along
channels and convolves the concatenation back to `channels` with a 1x1 kernel. Every operator's
output has the same shape. The nodes nobody reads are added into the output. The node order is the
DAG's numbering, as a model definition would write it.
"""

from __future__ import annotations

from typing import Literal

import networkx as nx
import numpy as np

from ..ir import Graph, GraphBuilder, Value, f32

WS_K, WS_P = 4, 0.75
"""Watts-Strogatz degree and rewiring probability of RandWire's WS(4, 0.75)."""

ER_P = 0.1
"""Edge probability of the Erdos-Renyi graphs."""

CONCAT_P = 0.25
"""Probability that an operator of several inputs concatenates them (and convolves) instead of adding."""


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
    """An IR graph of `n` operators (convolutions, adds, concats) wired as `random_dag(n, kind, seed)`."""
    rng = np.random.default_rng(seed)
    dag = random_dag(n, kind, seed)
    b = GraphBuilder(f"randwire-{kind}{n}-s{seed}")
    x = b.input("x", f32[1, channels, size, size])

    def conv(v: Value, name: str, kernel: int = 3) -> Value:
        w = rng.standard_normal((channels, v.type.shape[1], kernel, kernel)) / (kernel * np.sqrt(v.type.shape[1]))
        return b.conv2d(v, w.astype(np.float32), np.zeros(channels, np.float32), pads=kernel // 2, name=name)

    def add_all(values: list[Value], name: str) -> Value:
        acc = values[0]
        for k, v in enumerate(values[1:]):
            acc = b.add(acc, v, name=name if k == len(values) - 2 else f"{name}.{k}")
        return acc

    out: dict[int, Value] = {}
    for i in range(n):
        preds = [out[p] for p in sorted(dag.predecessors(i))]
        name = f"n{i}"
        if not preds:
            out[i] = conv(x, name)
        elif len(preds) == 1:
            out[i] = conv(preds[0], name)
        elif rng.random() < CONCAT_P:
            out[i] = conv(b.concat(preds, axis=1, name=f"{name}.cat"), name, kernel=1)
        else:
            out[i] = add_all(preds, name)
    sinks = [out[i] for i in range(n) if dag.out_degree(i) == 0]
    b.output(add_all(sinks, "y") if len(sinks) > 1 else sinks[0])
    return b.build()
