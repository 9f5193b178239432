"""The arithmetic of the quantize pass: weight rounding, activation ranges and their parameters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.dtypes import DType, bf16, f16, i4, i8, u8
from ..ir.types import QuantInfo, TensorType

INT_PRECISIONS: dict[str, DType] = {"int8": i8, "uint8": u8, "int4": i4}
"""Integer weight precisions and their storage dtypes."""

HALF_PRECISIONS: dict[str, DType] = {"fp16": f16, "bf16": bf16}
"""Half-precision weight storage (widened back to f32 by a cast)."""

QMAX = {"i8": 127, "u8": 127, "i4": 7}
"""Largest |q| of each symmetric weight storage."""
WEIGHT_ZERO = {"i8": 0, "u8": 128, "i4": 0}
"""Zero point of each weight storage: u8 weights stay symmetric around 128."""


@dataclass(frozen=True)
class StoredWeight:
    """A weight in its narrow storage: the array, its type, and how far it moved.

    `channel_error` is max |W - W'| per output channel (one entry per tensor when per tensor),
    where W' is what the graph computes with after dequantize or cast.
    """

    data: np.ndarray
    type: TensorType
    scale: tuple[float, ...] | None
    zero_point: tuple[int, ...] | None
    axis: int | None
    channel_error: np.ndarray
    group_size: int = 0
    """Length of each scale's group along `axis` (0: per axis or per tensor, the scales in `scale`)."""
    group_scale: np.ndarray | None = None
    """f32, shaped like the weight but ceil(K / group_size) along `axis`: one scale per group (grouped only)."""
    group_error: np.ndarray | None = None
    """max |W - W'| per group, shaped like `group_scale` (grouped only)."""

    @property
    def max_error(self) -> float:
        """Largest per-element weight change."""
        return float(self.channel_error.max(initial=0.0))


def _per_channel(a: np.ndarray, axis: int | None) -> np.ndarray:
    """max over every axis but `axis` (all axes when None), kept broadcastable."""
    axes = tuple(i for i in range(a.ndim) if i != axis) if axis is not None else tuple(range(a.ndim))
    return np.max(a, axis=axes, keepdims=True, initial=0.0)


def quantize_weight(w: np.ndarray, dtype: DType, axis: int | None) -> StoredWeight:
    """Symmetric round-to-nearest quantization of `w` to `dtype` (i8, u8 or i4) per `axis` or per tensor.

    scale = max|W| / qmax per channel (127 for 8 bits, 7 for 4), q = clip(rint(W / scale)), so each
    element moves by at most scale/2. u8 stores q + 128. A channel of zeros gets scale 1.
    """
    qmax = QMAX[dtype.name]
    w64 = w.astype(np.float64)
    amax = _per_channel(np.abs(w64), axis)
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)  # the scale the graph will hold
    q = np.clip(np.rint(w64 / scale.astype(np.float64)), -qmax, qmax)
    return stored_weight(w, q, scale, dtype, axis)


def stored_weight(w: np.ndarray, q: np.ndarray, scale: np.ndarray, dtype: DType, axis: int | None) -> StoredWeight:
    """The StoredWeight of integers `q` (shaped like `w`, in [-qmax, qmax]) with f32 `scale` per `axis` (kept
    broadcastable) or per tensor, and how far it moved from `w`. u8 stores q + 128."""
    zp = WEIGHT_ZERO[dtype.name]
    stored = (q + zp).astype(dtype.np_dtype)
    # exactly what the reference dequantize computes from the stored integers
    back = ((stored.astype(np.int32) - zp).astype(np.float32) * scale).astype(np.float32)
    err = _per_channel(np.abs(w.astype(np.float64) - back.astype(np.float64)), axis).reshape(-1)
    scales = tuple(float(s) for s in scale.reshape(-1))
    zps = (zp,) * len(scales)
    qi = QuantInfo(scales, zps, dtype.bits, axis)
    return StoredWeight(stored, TensorType(w.shape, dtype, quant=qi), scales, zps, axis, err)


def quantize_grouped(w: np.ndarray, dtype: DType, axis: int, group_size: int) -> StoredWeight:
    """Symmetric round-to-nearest quantization of `w` to `dtype` (i8 or i4) with one scale per group of
    `group_size` consecutive elements along `axis` (K), per position of the other axes (output channels).

    When w.shape[axis] is not a multiple of group_size the last group is shorter (as ONNX's block_size).
    scale = max|W| / qmax over the group (a group of zeros gets 1), q = clip(rint(W / scale)): each element
    moves by at most its group's scale / 2. `channel_error` is max |W - W'| over each output channel.
    """
    if dtype.name not in ("i8", "i4"):
        raise ValueError(f"grouped quantization is symmetric: i8 or i4, not {dtype.name}")
    qmax = QMAX[dtype.name]
    k = w.shape[axis]
    groups = -(-k // group_size)
    wm = np.moveaxis(w.astype(np.float64), axis, -1)  # [..., K]
    padded = np.zeros(wm.shape[:-1] + (groups * group_size,), np.float64)
    padded[..., :k] = wm
    amax = np.abs(padded).reshape(wm.shape[:-1] + (groups, group_size)).max(axis=-1)
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)  # [..., groups], the scale the graph holds
    full = np.repeat(scale, group_size, axis=-1)[..., :k]
    q = np.clip(np.rint(wm / full.astype(np.float64)), -qmax, qmax)
    return stored_grouped(w, np.moveaxis(q, -1, axis), np.moveaxis(scale, -1, axis), dtype, axis, group_size)


def stored_grouped(w: np.ndarray, q: np.ndarray, scale: np.ndarray, dtype: DType, axis: int,
                   group_size: int) -> StoredWeight:
    """The StoredWeight of integers `q` (shaped like `w`) with f32 group scales `scale` (like `w`, but
    ceil(K / group_size) along `axis`), and how far it moved from `w`."""
    k = w.shape[axis]
    groups = scale.shape[axis]
    wm = np.moveaxis(w.astype(np.float64), axis, -1)  # [..., K]
    padded = np.zeros(wm.shape[:-1] + (groups * group_size,), np.float64)
    scale = np.moveaxis(scale.astype(np.float32), axis, -1)
    full = np.repeat(scale, group_size, axis=-1)[..., :k]
    stored = q.astype(dtype.np_dtype)
    # exactly what the reference dequantize computes from the stored integers
    back = np.moveaxis(stored, axis, -1).astype(np.int32).astype(np.float32) * full
    diff = np.abs(wm - back.astype(np.float64))
    dpad = np.zeros(padded.shape, np.float64)
    dpad[..., :k] = diff
    gerr = dpad.reshape(wm.shape[:-1] + (groups, group_size)).max(axis=-1)
    cerr = diff.max(axis=-1, initial=0.0).reshape(-1)
    return StoredWeight(stored, TensorType(w.shape, dtype), None, None, axis, cerr, group_size,
                        np.ascontiguousarray(np.moveaxis(scale, -1, axis)), np.moveaxis(gerr, -1, axis))


def dequantized(sw: StoredWeight) -> np.ndarray:
    """The f32 weight the graph computes with after `dequantize` of an integer StoredWeight."""
    q = sw.data.astype(np.int32) - WEIGHT_ZERO[sw.type.dtype.name]
    if sw.group_scale is not None:
        k = sw.data.shape[sw.axis]  # type: ignore[index]
        scale = np.repeat(sw.group_scale, sw.group_size, axis=sw.axis).take(np.arange(k), axis=sw.axis)
    else:
        assert sw.scale is not None
        shape = [1] * sw.data.ndim
        if sw.axis is not None:
            shape[sw.axis] = -1
        scale = np.asarray(sw.scale, np.float32).reshape(shape)
    return (q.astype(np.float32) * scale).astype(np.float32)


def half_weight(w: np.ndarray, dtype: DType, axis: int | None) -> StoredWeight | None:
    """`w` stored as f16 or bf16 (round to nearest even); None when a value overflows the format."""
    stored = w.astype(dtype.np_dtype)
    if not np.all(np.isfinite(stored.astype(np.float32))):
        return None
    err = _per_channel(np.abs(w.astype(np.float64) - stored.astype(np.float64)), axis).reshape(-1)
    return StoredWeight(stored, TensorType(w.shape, dtype), None, None, axis, err)


def activation_params(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero point) of asymmetric u8 over [lo, hi] widened to hold 0: zero is exact."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        return 1.0, 0
    scale = float(np.float32((hi - lo) / 255.0))
    zp = int(np.clip(np.rint(-lo / scale), 0, 255))
    return scale, zp
