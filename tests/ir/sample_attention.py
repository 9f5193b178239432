"""Attention test graphs: the attention op, and the same computation spelled as decomposed ops."""

from __future__ import annotations

import math

import numpy as np
from tensorsmith.ir import Graph, GraphBuilder, f32


def attention_graph(b: int, sq: int, skv: int, heads: int, d: int, mask_shape: tuple[int, ...] | None = None,
                    scale: float = 0.0, causal: bool = False) -> Graph:
    """attention(q, k, v[, mask]) with graph inputs q, k, v (and mask), causal if asked."""
    g = GraphBuilder("attention")
    e = heads * d
    q, k, v = g.input("q", f32[b, sq, e]), g.input("k", f32[b, skv, e]), g.input("v", f32[b, skv, e])
    mask = g.input("mask", f32[mask_shape]) if mask_shape is not None else None
    g.output(g.attention(q, k, v, mask, heads=heads, scale=scale, causal=causal, name="y"))
    return g.build()


def decomposed_attention_graph(b: int, sq: int, skv: int, heads: int, d: int,
                               mask_shape: tuple[int, ...] | None = None, scale: float = 0.0) -> Graph:
    """The same computation as reshape/transpose/matmul/mul/add/softmax/matmul/transpose/reshape."""
    g = GraphBuilder("attention_decomposed")
    e = heads * d
    q, k, v = g.input("q", f32[b, sq, e]), g.input("k", f32[b, skv, e]), g.input("v", f32[b, skv, e])
    qh = g.transpose(g.reshape(q, (b, sq, heads, d)), (0, 2, 1, 3))
    kt = g.transpose(g.reshape(k, (b, skv, heads, d)), (0, 2, 3, 1))
    vh = g.transpose(g.reshape(v, (b, skv, heads, d)), (0, 2, 1, 3))
    s = g.mul(g.matmul(qh, kt), np.float32(scale or 1.0 / math.sqrt(d)))
    if mask_shape is not None:
        s = g.add(s, g.input("mask", f32[mask_shape]))
    o = g.matmul(g.softmax(s, axis=-1), vh)
    g.output(g.reshape(g.transpose(o, (0, 2, 1, 3)), (b, sq, e), name="y"))
    return g.build()


def attention_inputs(rng: np.random.Generator, b: int, sq: int, skv: int, heads: int, d: int,
                     mask_shape: tuple[int, ...] | None = None, magnitude: float = 1.0) -> dict[str, np.ndarray]:
    """Random q, k, v (uniform in +-magnitude) and a mask with some -inf and large negative entries."""
    e = heads * d
    feeds = {n: rng.uniform(-magnitude, magnitude, (b, s, e)).astype(np.float32)
             for n, s in (("q", sq), ("k", skv), ("v", skv))}
    if mask_shape is not None:
        m = rng.uniform(-3, 3, mask_shape).astype(np.float32)
        m[rng.random(mask_shape) < 0.2] = -1e9
        if m.shape[-1] > 1:
            m[..., 0] = -np.inf  # never a whole row: column 0 only
        feeds["mask"] = m
    return feeds
