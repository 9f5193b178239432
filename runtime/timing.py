"""A graph timer for passes that report measured speed-ups (`PassContext.measure`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..ir.graph import Graph


def random_feeds(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of `graph`'s input types: standard normal floats, zeros for integers and booleans."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in graph.inputs:
        dt = v.type.dtype.np_dtype
        if v.type.dtype.is_float:
            feeds[v.name] = rng.standard_normal(v.type.shape).astype(dt)
        else:
            feeds[v.name] = np.zeros(v.type.shape, dt)
    return feeds


def graph_timer(backend: str = "numba", repeats: int = 7, warmup: int = 2,
                **options: Any) -> Callable[[Graph], float]:
    """A function giving the median seconds of one run of a graph compiled for `backend` (compile time apart),
    on random inputs: hand it to `PassContext(measure=...)`."""
    from . import compile as compile_graph

    def measure(graph: Graph) -> float:
        """Median seconds of one run of `graph` on this machine."""
        exe = compile_graph(graph, backend=backend, **options)
        return exe.median_seconds(random_feeds(graph), repeats=repeats, warmup=warmup)

    return measure
