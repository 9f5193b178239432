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
    """A weight as the integer ops hold it: s8 data and per-output-channel scales."""

    data: np.ndarray
    scale: np.ndarray
    extra_error: float
    sparsity: SparsityInfo | None = None
    """The stored weight's annotation: symmetric zero points keep pruned zeros zero, so it still holds."""


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


def new_const(graph: Graph, data: np.ndarray, name: str) -> Value:
    """A new constant value holding `data` (named after `name`)."""
    arr = np.ascontiguousarray(data)
    return Value(graph.fresh_name(name), TensorType(arr.shape, dtype_from_numpy(arr.dtype)), arr)
