"""Weights as the integer ops hold them: s8 data in the `weight_bits` range with per-output-channel scales."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.dtypes import dtype_from_numpy
from ..ir.graph import Graph, Value
from ..ir.ops.integer import WEIGHT_BITS
from ..ir.types import SparsityInfo, TensorType

FOLD_OPS = {"linear": "qlinear", "matmul": "qmatmul", "conv2d": "qconv2d"}
"""Matrix op -> the integer op it folds into."""


@dataclass(frozen=True)
class IntWeight:
    """A weight as the integer ops hold it: s8 data, per-output-channel scales and maybe a weight zero point."""

    data: np.ndarray
    scale: np.ndarray
    extra_error: float
    sparsity: SparsityInfo | None = None
    """The stored weight's annotation: symmetric zero points keep pruned zeros zero, so it still holds."""
    zero_point: tuple[int, ...] = ()
    """The op's weight_zero_point (empty: none) for an asymmetric weight held in s8 (`shifted_into_s8`)."""


def channel_axis(op: str, rank: int) -> int:
    """The output-channel axis of a matrix op's weight: the last for matmul's [K, N], else the first."""
    return rank - 1 if op == "matmul" else 0


def fit_weight(w: np.ndarray, scale: np.ndarray, axis_c: int, bits: int,
               sparsity: SparsityInfo | None = None) -> IntWeight:
    """Integer weights `w` (scales `scale` along `axis_c`) in the range `bits` holds: kept when they fit, else
    each channel re-quantized from its real values, w7 = rint(w * s / s7) with s7 = max|w * s| / hi."""
    lo, hi = WEIGHT_BITS[bits]
    if w.min(initial=0) >= lo and w.max(initial=0) <= hi:
        return IntWeight(w.astype(np.int8), scale, 0.0, sparsity)
    shape = [1] * w.ndim
    shape[axis_c] = -1
    real = w.astype(np.float64) * scale.reshape(shape)
    axes = tuple(i for i in range(w.ndim) if i != axis_c)
    amax = np.abs(real).max(axis=axes, initial=0.0)
    s7 = np.where(amax > 0, amax / hi, 1.0).astype(np.float32)
    w7 = np.clip(np.rint(real / s7.reshape(shape)), lo, hi)
    extra = float(np.abs(w7 * s7.reshape(shape) - real).max(initial=0.0))
    return IntWeight(w7.astype(np.int8), s7, extra, sparsity)


def shifted_into_s8(w: np.ndarray, axis_c: int) -> tuple[np.ndarray, tuple[int, ...]] | str:
    """Integer weights `w` wider than s8 (an asymmetric weight less its zero point) as (s8 weight, the op's
    weight_zero_point): w = weight - weight_zero_point exactly, one zero point for all channels where one serves,
    else one per channel (along `axis_c`); or why not (a channel spanning more than 256 values)."""
    axes = tuple(i for i in range(w.ndim) if i != axis_c)
    lo = w.min(axis=axes, initial=0).astype(np.int64)
    hi = w.max(axis=axes, initial=0).astype(np.int64)
    first, last = np.maximum(-128, -128 - lo), np.minimum(127, 127 - hi)  # the zero points that fit each channel
    if (first > last).any():
        c = int(np.argmax(first > last))
        return f"channel {c} spans [{int(lo[c])}, {int(hi[c])}], more than one int8 range"
    shape = [1] * w.ndim
    shape[axis_c] = -1
    if first.max() <= last.min():  # one zero point for all: the one nearest 0
        t = np.full(first.shape, int(np.clip(0, first.max(), last.min())), np.int64)
        zp: tuple[int, ...] = (int(t[0]),)
    else:
        t = np.clip(0, first, last)
        zp = tuple(int(v) for v in t)
    return (w.astype(np.int64) + t.reshape(shape)).astype(np.int8), zp


def new_const(graph: Graph, data: np.ndarray, name: str) -> Value:
    """A new constant value holding `data` (named after `name`)."""
    arr = np.ascontiguousarray(data)
    return Value(graph.fresh_name(name), TensorType(arr.shape, dtype_from_numpy(arr.dtype)), arr)
