"""Multi-head scaled dot-product attention on [batch, sequence, heads * head_dim] tensors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..types import TensorType
from .registry import Attr, attr_error, dtype_error, register_op, shape_error

DEFAULT_SCALE = 0.0
"""The `scale` attribute's spelling of "the default": 1 / sqrt(head_dim)."""


def attention_scale(scale: float, embed: int, heads: int) -> float:
    """The factor the scores are multiplied by: `scale`, or 1/sqrt(head_dim) when it is DEFAULT_SCALE."""
    return 1.0 / math.sqrt(embed // heads) if scale == DEFAULT_SCALE else scale


@register_op("attention", ("q", "k", "v", "mask?"),
             (Attr("heads", "int"), Attr("scale", "float", DEFAULT_SCALE), Attr("causal", "bool", False)),
             doc="softmax(q_h @ k_h^T * scale + mask) @ v_h per head h, heads concatenated: q [B, Sq, E], "
                 "k and v [B, Skv, E], E = heads * D, head h at columns h*D..(h+1)*D; the additive f32 mask "
                 "broadcasts to [B, heads, Sq, Skv]; scale 0.0 means 1/sqrt(D); causal: query i attends to "
                 "keys 0..i only (the scores of keys j > i are -inf, as PyTorch's is_causal: aligned at the "
                 "top left).")
def _attention(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    q, k, v = ts[0], ts[1], ts[2]
    for name, t in zip(("q", "k", "v", "mask"), ts):
        if t.dtype.name != "f32":
            raise dtype_error(f"attention: {name} must be f32, got {t.dtype.name}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.rank != 3:
            raise shape_error(f"attention: {name} must be [batch, sequence, embed], got {list(t.shape)}")
    heads = a["heads"]
    b, sq, e = q.shape
    if heads < 1 or e % heads:
        raise attr_error(f"attention: heads={heads} must be positive and divide the embedding {e} of q {list(q.shape)}")
    if k.shape != v.shape:
        raise shape_error(f"attention: k {list(k.shape)} and v {list(v.shape)} must have the same shape")
    if k.shape[0] != b or k.shape[2] != e:
        raise shape_error(f"attention: k and v {list(k.shape)} must be [{b}, Skv, {e}] to match q {list(q.shape)}")
    if math.isnan(a["scale"]):
        raise attr_error("attention: scale must be a number, got nan")
    if len(ts) == 4:
        full = (b, heads, sq, k.shape[1])
        mask = ts[3]
        if mask.rank > 4 or any(m not in (1, f) for m, f in zip(mask.shape[::-1], full[::-1])):
            raise shape_error(f"attention: mask {list(mask.shape)} does not broadcast to "
                              f"[batch, heads, Sq, Skv] = {list(full)}")
    return [TensorType(q.shape, q.dtype)]


def causal_mask(sq: int, skv: int) -> np.ndarray:
    """The additive f32 mask [Sq, Skv] that `causal` stands for: 0 where key j <= query i, -inf above."""
    return np.where(np.arange(skv)[None, :] > np.arange(sq)[:, None], np.float32(-np.inf), np.float32(0.0))


def attended_scores(sq: int, skv: int, causal: bool) -> int:
    """Query-key pairs a head scores: Sq * Skv, or with `causal` those with key j <= query i."""
    if not causal:
        return sq * skv
    full = max(0, sq - skv)  # queries from Skv on see every key
    seen = min(sq, skv)
    return seen * (seen + 1) // 2 + full * skv
