"""Hypothesis strategies shared by the test suite: random valid graphs with matching inputs.

`random_graphs()` draws small graphs (a dozen nodes, tensors of at most a few thousand
elements) built with GraphBuilder from a mix of ops: elementwise unary/binary with
broadcasting, linear, matmul, reshape, transpose, softmax, layernorm, concat, slice,
reductions, gather, conv2d (+ batchnorm) and pooling on 4-D tensors, quantize/dequantize,
casts; and the shapes passes look for: nodes whose inputs are all constants, duplicated
subexpressions, x*1, x+0, transpose of transpose, reshape of reshape, dropout, identity.
Every value stays finite: a magnitude bound is tracked per value, log/sqrt/div get abs()+1
guards and exp a clip.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import numpy as np
from hypothesis import strategies as st
from tensorsmith.ir import BuildError, Graph, GraphBuilder, Value, f32, verify

from .generators import FOUR_D, GENERATORS, g_binary, g_identities, g_reduce, g_unary
from .state import MAX_BOUND, MAX_ELEMENTS, MAX_RANK, Reject, State, bcast_shape

__all__ = ["MAX_BOUND", "MAX_ELEMENTS", "random_graphs"]

_FALLBACK = ("relu", "identity", "neg", "abs", "tanh", "sigmoid")
"""One-input ops that fit any f32 value: used when nothing else could be drawn."""


def _input_shape(s: State) -> tuple[int, ...]:
    """An NCHW image shape half the time, else rank 1 to 3."""
    if s.bool():
        return (s.int(1, 2), s.int(1, 4), s.int(3, 7), s.int(3, 7))
    return tuple(s.int(1, 8) for _ in range(s.int(1, 3)))


def _add_node(s: State, gen: Callable[[State], tuple[Value, float]], limit: int,
              ops: Collection[str] | None) -> bool:
    """Run one generator; on any misfit (size, bound, an op not in `ops`), drop what it added, return False."""
    marks = len(s.b.nodes), len(s.b.inputs), dict(s.inputs)
    try:
        v, bound = gen(s)
        new = [o for n in s.b.nodes[marks[0]:] for o in n.outputs]
        if (len(s.b.nodes) > limit or v.type.rank > MAX_RANK or not bound <= MAX_BOUND
                or any(o.type.numel > MAX_ELEMENTS or o.type.numel == 0 for o in new)
                or (ops is not None and any(n.op not in ops for n in s.b.nodes[marks[0]:]))):
            raise Reject
    except (Reject, BuildError):
        del s.b.nodes[marks[0]:]
        del s.b.inputs[marks[1]:]
        s.inputs = marks[2]
        return False
    s.pool.append(v)
    s.bound[id(v)] = bound
    return True


@st.composite
def random_graphs(draw: Callable[[st.SearchStrategy[Any]], Any], max_nodes: int = 14,
                  dead_branches: bool = False,
                  ops: Collection[str] | None = None) -> tuple[Graph, dict[str, np.ndarray]]:
    """A random valid graph of at most `max_nodes` nodes and inputs for it.

    Graphs pass `verify`; with `dead_branches`, one or two extra nodes are left unread
    (not outputs), and the graph passes `verify(graph, allow_dead=True)` instead.
    `ops` limits the graph to those ops (e.g. the ones a backend lowers); it must hold at
    least one of relu, identity, neg, abs, tanh, sigmoid.
    """
    fallback = next((op for op in _FALLBACK if ops is None or op in ops), None)
    if fallback is None:
        raise ValueError(f"random_graphs: ops must include one of {_FALLBACK}")
    s = State(draw, GraphBuilder("random"), np.random.default_rng(draw(st.integers(0, 2**32 - 1))))
    first = _input_shape(s)
    shapes = [first] + ([s.choice((first, bcast_shape(s, first), _input_shape(s)))] if s.bool() else [])
    for i, shape in enumerate(shapes):
        v = s.b.input(f"x{i}" if i else "x", f32[shape])
        s.inputs[v.name] = s.rng.uniform(-2.0, 2.0, shape).astype(np.float32)
        s.pool.append(v)
        s.bound[id(v)] = 2.0
    limit = max_nodes - (2 if dead_branches else 0)
    target = s.int(1, limit)
    for _ in range(4 * limit):
        if len(s.b.nodes) >= target:
            break
        four_d = any(v.type.rank == 4 for v in s.pool)
        _add_node(s, s.choice(GENERATORS + (FOUR_D if four_d else ())), limit, ops)
    if not s.b.nodes:
        s.pool.append(s.b.op(fallback, s.pool[0]))
    used = {id(v) for n in s.b.nodes for v in n.inputs}
    outs = [o for n in s.b.nodes for o in n.outputs if id(o) not in used]
    extra = [o for n in s.b.nodes for o in n.outputs if id(o) in used and o.type.dtype == f32]
    if extra and draw(st.integers(0, 4)) == 0:
        outs.insert(0, s.choice(extra))
    s.b.output(*outs)
    if dead_branches:
        live = len(s.b.nodes)
        for _ in range(s.int(1, 2)):
            _add_node(s, s.choice((g_unary, g_binary, g_reduce, g_identities)), max_nodes, ops)
        if len(s.b.nodes) == live:
            s.b.op(fallback, s.pool[0])
    g = s.b.build(check=False)
    verify(g, allow_dead=dead_branches)
    return g, {v.name: s.inputs[v.name] for v in g.inputs}
