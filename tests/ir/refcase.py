"""Helpers for the reference-op tests: run an op through a built graph; record which ops are tested."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, GraphBuilder, dtype_from_numpy

COVERED: dict[str, list[str]] = {}
"""op name -> tests that check the reference rule of that op against an independent result."""

_RAN: set[str] = set()


def mark_ran(graph: Graph) -> None:
    """Record the ops of `graph` as run (for `covers`), for tests that call the reference backend themselves."""
    _RAN.update(n.op for n in graph.nodes)


def run_graph(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """reference.run, remembering which ops ran (for `covers`)."""
    _RAN.update(n.op for n in graph.nodes)
    return reference.run(graph, inputs)


def run_op(op: str, *arrays: np.ndarray, **attrs: Any) -> np.ndarray:
    """Build `op(in0, in1, ...)` with every array as a graph input, run it, return its output."""
    b = GraphBuilder(op.replace("-", "_"))
    args, feeds = [], {}
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        v = b.input(f"in{i}", dtype_from_numpy(a.dtype)[a.shape])
        args.append(v)
        feeds[v.name] = a
    y = b.op(op, *args, **attrs)
    b.output(y)
    out = run_graph(b.build(), feeds)[y.name]
    assert out.shape == y.type.shape and out.dtype == y.type.dtype.np_dtype
    return out


def covers(*ops: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a test as checking the reference rules of `ops`; the test fails if one of them never ran."""

    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        for op in ops:
            COVERED.setdefault(op, []).append(f"{fn.__module__}.{fn.__name__}")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            _RAN.clear()
            fn(*args, **kwargs)
            missing = set(ops) - _RAN
            assert not missing, f"{fn.__name__} claims to test {sorted(missing)} but never ran them"

        return wrapper

    return deco
