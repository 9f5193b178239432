"""Recognition of decomposed multi-head attention: matmul(softmax(scale * Q K^T + mask), V) -> `attention`.

A constant mask that is exactly the causal one (-inf above the diagonal, 0 elsewhere) becomes `causal=true`
(the kernels then skip the masked key tiles).

Exporters write the head split as different chains of reshape / transpose / slice / gather (BERT
style: [B, S, E] -> [B, S, H, D] -> [B, H, S, D]; PyTorch's MultiheadAttention: a packed QKV
projection in sequence-first order, sliced, reshaped and transposed). Rather than a pattern per
chain, each operand is traced back through its data-movement equations to the last computed value,
and the composed index map is compared with the head split of a [B, S, E] or [S, B, E] source (a
column block of it, for packed projections). The replacement is `attention` on [B, S, E] operands,
followed by the reshape and transpose back to [B, H, Sq, D]; the `transpose-transpose` and
`reshape-reshape` cleanups then cancel those against the exporter's head merge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..ir.graph import Value
from ..ir.ops.attention import causal_mask
from .fuse_patterns import fusion_pattern
from .rewrite import Rewriter, Var, op

VIEW_OPS = ("reshape", "flatten", "transpose", "slice", "gather", "identity")
"""Equations that only move data: an operand is traced back through them."""

MAX_TRACE_ELEMENTS = 1 << 24
"""Operands larger than this are not traced (the index map is an int64 array of that size)."""


@dataclass(frozen=True)
class HeadSource:
    """An operand's source: the computed value, whether it is sequence-first, and the column block it reads."""

    value: Value
    seq_first: bool
    column: int


def trace(v: Value) -> tuple[Value, np.ndarray] | None:
    """(source, index map): `v` equals source.flat[map] through a chain of data-movement equations."""
    from ..backends.reference import evaluate_node  # the golden semantics of each data-movement op

    chain = []
    cur = v
    while cur.producer is not None and cur.producer.op in VIEW_OPS and not cur.is_constant:
        node = cur.producer
        if any(not x.is_constant for x in node.inputs[1:]):
            return None
        chain.append(node)
        cur = node.inputs[0]
    if math.prod(cur.type.shape) > MAX_TRACE_ELEMENTS:
        return None
    index = np.arange(math.prod(cur.type.shape), dtype=np.int64).reshape(cur.type.shape)
    for node in reversed(chain):
        args = [index] + [np.asarray(x.data) for x in node.inputs[1:]]
        index = evaluate_node(node, args)[0]
    return cur, index


def head_source(v: Value, heads: int, keys_transposed: bool = False) -> HeadSource | None:
    """The [B, S, E] (or [S, B, E]) value whose head split is `v` ([B, H, S, D], or [B, H, D, S] for K^T)."""
    found = trace(v)
    if found is None:
        return None
    src, index = found
    if keys_transposed:
        index = np.swapaxes(index, -1, -2)
    if index.ndim != 4 or index.shape[1] != heads or src.type.rank != 3:
        return None
    b, h, s, d = index.shape
    width = src.type.shape[-1]
    for seq_first in (False, True):
        rows = np.arange(s)[:, None] * b + np.arange(b)[None, :] if seq_first else (
            np.arange(b)[None, :] * s + np.arange(s)[:, None])  # [s, b]: row of (batch b, position s)
        if src.type.shape[:2] != ((s, b) if seq_first else (b, s)):
            continue
        cols = np.arange(h)[:, None] * d + np.arange(d)[None, :]  # [h, d]
        base = rows.T[:, None, :, None] * width + cols[None, :, None, :]  # [b, h, s, d]
        start = int(index.reshape(-1)[0] - base.reshape(-1)[0])
        if 0 <= start <= width - h * d and np.array_equal(index, base + start):
            return HeadSource(src, seq_first, start)
    return None


def batch_first(rw: Rewriter, src: HeadSource, embed: int) -> Value:
    """`src` as a [B, S, E] value: the column block sliced out, sequence-first sources transposed."""
    v = src.value
    if src.column != 0 or v.type.shape[-1] != embed:
        v = rw.emit("slice", v, starts=[src.column], ends=[src.column + embed], axes=[2], steps=[1])
    return rw.emit("transpose", v, perm=[1, 0, 2]) if src.seq_first else v


def _scalar(v: Value) -> float | None:
    return float(v.data.reshape(-1)[0]) if v.data is not None and v.data.size == 1 else None


def _peel_scale(v: Value, rw: Rewriter) -> tuple[Value, float]:
    """`v` without a single-use multiply or divide by a scalar constant, and that factor."""
    node = v.producer
    if node is None or node.op not in ("mul", "div") or rw.uses_of(v) != 1:
        return v, 1.0
    a, b = node.inputs
    if node.op == "mul" and _scalar(a) is not None:
        return b, _scalar(a)  # type: ignore[return-value]
    if _scalar(b) is not None and _scalar(b) != 0:
        return a, _scalar(b) if node.op == "mul" else 1.0 / _scalar(b)  # type: ignore[operator]
    return v, 1.0


def _broadcasts(shape: tuple[int, ...], to: tuple[int, ...]) -> bool:
    return len(shape) <= len(to) and all(a in (1, b) for a, b in zip(shape[::-1], to[::-1]))


def _scores(v: Value, rw: Rewriter) -> tuple[Value, Value | None]:
    """(scaled Q K^T product, additive mask or None) of the softmax's input."""
    node = v.producer
    if node is not None and node.op == "add" and rw.uses_of(v) == 1:
        for s, m in (node.inputs, node.inputs[::-1]):
            inner = _peel_scale(s, rw)[0].producer
            if inner is not None and inner.op == "matmul" and _broadcasts(m.type.shape, v.type.shape):
                return s, m
    return v, None


def is_causal_constant(mask: Value, sq: int, skv: int) -> bool:
    """Whether `mask` is a constant that is exactly the causal mask (0 for key j <= query i, -inf above) on
    every [Sq, Skv] slice: the attention's `causal` flag then stands for it, bit for bit."""
    if mask.data is None or mask.type.rank < 2 or tuple(mask.type.shape[-2:]) != (sq, skv) or sq * skv == 0:
        return False
    slices = mask.data.reshape(-1, sq, skv)
    return bool(np.array_equal(slices, np.broadcast_to(causal_mask(sq, skv), slices.shape)))


@fusion_pattern("attention", op("matmul", op("softmax", Var("logits"), capture="probs"), Var("vh")))
def attention(rw: Rewriter, logits: Value, probs: Value, vh: Value) -> Value | None:
    """softmax(scale * (Q K^T) + mask) @ V over heads split from [B, S, E] values -> attention(q, k, v, mask)."""
    if (rw.uses_of(probs) != 1 or probs.type.rank != 4 or probs.type.dtype.name != "f32"
            or probs.producer.attrs["axis"] % 4 != 3):  # type: ignore[union-attr]
        return None
    scaled, mask = _scores(logits, rw)
    product, scale = _peel_scale(scaled, rw)
    mm = product.producer
    if mm is None or mm.op != "matmul" or rw.uses_of(product) != 1 or vh.type.rank != 4:
        return None
    qh, q_scale = _peel_scale(mm.inputs[0], rw)
    kt, k_scale = _peel_scale(mm.inputs[1], rw)
    heads, head_dim = vh.type.shape[1], vh.type.shape[3]
    scale *= q_scale * k_scale
    if scale == 0 or not math.isfinite(scale) or (mask is not None and mask.type.dtype.name != "f32"):
        return None
    q_src, k_src = head_source(qh, heads), head_source(kt, heads, keys_transposed=True)
    v_src = head_source(vh, heads)
    if q_src is None or k_src is None or v_src is None or qh.type.shape[3] != head_dim:
        return None
    embed = heads * head_dim
    b, _, sq, _ = qh.type.shape
    q, k, v = (batch_first(rw, s, embed) for s in (q_src, k_src, v_src))
    causal = mask is not None and is_causal_constant(mask, sq, kt.type.shape[3])
    args = [q, k, v] + ([mask] if mask is not None and not causal else [])
    out = rw.emit("attention", *args, heads=heads, scale=scale, causal=causal)
    return rw.emit("transpose", rw.emit("reshape", out, shape=[b, sq, heads, head_dim]), perm=[0, 2, 1, 3])
