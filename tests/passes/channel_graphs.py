"""Random MLP / CNN / residual graphs for structured pruning, and the masked graph a pruned one must match."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from tensorsmith.ir import Graph, GraphBuilder, f32
from tensorsmith.ir.graph import Value

ACTS = ("relu", "gelu", "sigmoid", "tanh", "identity")


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def mlp(rng: np.random.Generator, widths: list[int], acts: list[str], affine: list[bool], bn: list[bool],
        batch: int = 3) -> Graph:
    """linear (+ batchnorm) (+ per-channel mul/add) + activation per hidden layer, then an output linear."""
    b = GraphBuilder("mlp")
    h = b.input("x", f32[batch, widths[0]])
    for i, (n, act) in enumerate(zip(widths[1:], acts)):
        h = b.linear(h, _w(rng, n, h.type.shape[-1]) / np.sqrt(h.type.shape[-1]), _w(rng, n), name=f"fc{i}")
        if bn[i]:
            h = b.batchnorm(h, _w(rng, n), _w(rng, n), _w(rng, n), np.abs(_w(rng, n)) + 0.5, name=f"bn{i}")
        if affine[i]:
            h = b.add(b.mul(h, b.const(_w(rng, n), f"s{i}"), name=f"mul{i}"), b.const(_w(rng, 1, n), f"t{i}"),
                      name=f"shift{i}")
        h = b.op(act, h, name=f"act{i}")
    b.output(b.linear(h, _w(rng, 4, h.type.shape[-1]), _w(rng, 4), name="out"))
    return b.build()


def cnn(rng: np.random.Generator, channels: list[int], acts: list[str], bn: list[bool], pads: list[int],
        pool: list[bool], residual: bool, batch: int = 2, size: int = 8) -> Graph:
    """conv (+ batchnorm) + activation (+ maxpool) per layer, an optional residual pair, flatten, linear."""
    b = GraphBuilder("cnn")
    h = b.input("x", f32[batch, channels[0], size, size])
    for i, (c, act) in enumerate(zip(channels[1:], acts)):
        cin = h.type.shape[1]
        k = 3 if h.type.shape[2] >= 3 else 1
        h = b.conv2d(h, _w(rng, c, cin, k, k) / np.sqrt(k * k * cin), _w(rng, c), pads=pads[i] if k == 3 else 0,
                     name=f"conv{i}")
        if bn[i]:
            h = b.batchnorm(h, _w(rng, c), _w(rng, c), _w(rng, c), np.abs(_w(rng, c)) + 0.5, name=f"bn{i}")
        h = b.op(act, h, name=f"act{i}")
        if pool[i] and h.type.shape[2] >= 2:
            h = b.maxpool2d(h, kernel=(2, 2), name=f"pool{i}")
    if residual:
        c = h.type.shape[1]
        r = b.relu(b.conv2d(h, _w(rng, c, c, 1, 1) / np.sqrt(c), _w(rng, c), name="branch"), name="branch_act")
        h = b.add(r, h, name="residual")
    h = b.flatten(h, axis=1, name="flat")
    b.output(b.linear(h, _w(rng, 5, h.type.shape[1]) / np.sqrt(h.type.shape[1]), _w(rng, 5), name="out"))
    return b.build()


@st.composite
def mlp_graphs(draw: st.DrawFn) -> Graph:
    """A random MLP with 1-3 hidden layers."""
    depth = draw(st.integers(1, 3))
    widths = [draw(st.integers(2, 12)) for _ in range(depth + 1)]
    acts = [draw(st.sampled_from(ACTS)) for _ in range(depth)]
    affine = [draw(st.booleans()) for _ in range(depth)]
    bn = [draw(st.booleans()) for _ in range(depth)]
    return mlp(np.random.default_rng(draw(st.integers(0, 2**16))), widths, acts, affine, bn)


@st.composite
def cnn_graphs(draw: st.DrawFn) -> Graph:
    """A random CNN with 1-3 conv layers (padded only before a zero-preserving activation), maybe a residual pair."""
    depth = draw(st.integers(1, 3))
    channels = [draw(st.integers(1, 6)) for _ in range(depth + 1)]
    bn = [draw(st.booleans()) for _ in range(depth)]
    acts = [draw(st.sampled_from(ACTS)) for _ in range(depth)]
    # a padded conv after a channel with a nonzero constant is exact only away from the border: test it apart
    pads = [1 if i == 0 or (acts[i - 1] in ("relu", "tanh", "identity") and not bn[i - 1]) else 0
            for i in range(depth)]
    pool = [draw(st.booleans()) for _ in range(depth)]
    residual = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return cnn(rng, channels, acts, bn, pads, pool, residual, size=draw(st.sampled_from([6, 8])))


def masked(graph: Graph, pruned: Graph, key: str = "prune-channels") -> Graph:
    """`graph` with the weight rows and biases of the channels `pruned` removed set to zero."""
    m = graph.copy()
    removed = {n.name: n.meta[key]["removed"] for n in pruned.nodes if key in n.meta}
    for n in m.nodes:
        if n.name in removed:
            for i in range(1, len(n.inputs)):
                a = n.inputs[i].data.copy()
                a[removed[n.name]] = 0
                n.inputs[i] = Value(n.inputs[i].name, n.inputs[i].type, a)
    return m


def inputs_for(g: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal f32 inputs."""
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
