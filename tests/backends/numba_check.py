"""Helpers of the Numba backend tests: build one-op graphs and compare with the reference backend."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.testing import assert_allclose, assert_array_equal
from tensorsmith.backends import reference
from tensorsmith.backends.numba import DEFAULT_PARALLEL_THRESHOLD
from tensorsmith.ir import Graph, GraphBuilder, Node, dtype_from_numpy
from tensorsmith.ir.regions import make_region
from tensorsmith.runtime.numba_exec import NumbaExecutable

SERIAL = 1 << 62
"""A parallel threshold no kernel reaches: every kernel runs its serial twin."""
PARALLEL = 0
"""A parallel threshold every kernel reaches: every kernel runs its parallel twin."""


def op_graph(op: str, *arrays: Any, consts: tuple[int, ...] = (), **attrs: Any) -> tuple[Graph, dict[str, np.ndarray]]:
    """A graph applying `op` to `arrays` (inputs, or constants at the positions in `consts`)."""
    b = GraphBuilder(op.replace("-", "_"))
    args, feeds = [], {}
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        if i in consts:
            args.append(b.const(a, f"c{i}"))
        else:
            v = b.input(f"in{i}", dtype_from_numpy(a.dtype)[a.shape])
            args.append(v)
            feeds[v.name] = a
    b.output(b.op(op, *args, **attrs))
    return b.build(), feeds


def check(graph: Graph, feeds: dict[str, np.ndarray], rtol: float = 1e-5, atol: float = 1e-6,
          thresholds: tuple[int, ...] = (DEFAULT_PARALLEL_THRESHOLD,), exact: bool = False) -> dict[str, np.ndarray]:
    """Run `graph` on the reference backend and on Numba (once per parallel threshold); assert they agree.

    Small test tensors run the serial twins at the default threshold; test_numba_parallel.py runs
    every kernel's parallel twin (compiling both twins for every case would triple compile time).
    """
    ref = reference.run(graph, feeds)
    got: dict[str, np.ndarray] = {}
    for th in thresholds:
        got = NumbaExecutable(graph, parallel_threshold=th).run(feeds)
        assert set(got) == set(ref)
        for k in ref:
            assert got[k].shape == ref[k].shape and got[k].dtype == ref[k].dtype, (k, got[k].dtype, ref[k].dtype)
            if exact or ref[k].dtype.kind not in "f":
                assert_array_equal(got[k], ref[k], err_msg=f"{k} (parallel threshold {th})")
            else:
                assert_allclose(got[k], ref[k], rtol=rtol, atol=atol, err_msg=f"{k} (parallel threshold {th})")
    return got


def check_op(op: str, *arrays: Any, consts: tuple[int, ...] = (), rtol: float = 1e-5, atol: float = 1e-6,
             exact: bool = False, **attrs: Any) -> None:
    """check() on a one-op graph."""
    g, feeds = op_graph(op, *arrays, consts=consts, **attrs)
    check(g, feeds, rtol=rtol, atol=atol, exact=exact)


def region(graph: Graph, *names: str) -> Node:
    """Make the nodes named `names` (in graph order, the last producing the result) one `fused` region."""
    by_name = {n.name: n for n in graph.nodes}
    return make_region(graph, [by_name[name] for name in names])
