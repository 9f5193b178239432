"""Reference semantics of the integer ops (see ir/ops/integer.py and docs/ir.md, "Integer ops").

Integer-exact: the accumulators are int64 sums of (x - x_zero_point) * (w - weight_zero_point), equal to the int32 the
kernels keep (the type rule bounds K so that they cannot overflow); they are computed as float64 products
(BLAS), exact while every partial sum stays below 2**53 (`exact_in_f64`), else in int64. Dequantization is float32:
y = float32(x_scale * weight_scale) * float32(acc) + bias; requantization rounds half to even and
saturates to the output type.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ir.dtypes import i64
from ...ir.graph import Node, Value
from ...ir.ops.integer import WEIGHT_BITS, weight_zero_points
from ...ir.types import TensorType
from .nn import NN_RULES

Arrays = list[np.ndarray]
U8_MAX = np.float32(255)


def dynamic_qparams(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale f32, zero point i32) of the ranges [min(lo, 0), max(hi, 0)], as DynamicQuantizeLinear."""
    lo = np.minimum(lo.astype(np.float32), np.float32(0))
    hi = np.maximum(hi.astype(np.float32), np.float32(0))
    same = hi == lo
    scale = np.where(same, np.float32(1), (hi - lo) / U8_MAX).astype(np.float32)
    zp = np.clip(np.float32(0) - (lo / scale).astype(np.float32), np.float32(0), U8_MAX)
    return scale, np.rint(zp).astype(np.int32)


def _quantize_dynamic(node: Node, xs: Arrays) -> list[np.ndarray]:
    x = xs[0].astype(np.float32, copy=False)
    rows = node.outputs[1].type.shape[0]
    flat = x.reshape(rows, -1)
    if flat.shape[1] == 0:
        lo = hi = np.zeros(rows, np.float32)
    else:  # the range of the finite values: NaN and infinities left out (the range includes 0 anyway)
        finite = np.where(np.isfinite(flat), flat, np.float32(0))
        lo, hi = finite.min(axis=1), finite.max(axis=1)
    scale, zp = dynamic_qparams(lo, hi)
    q = np.rint((flat / scale[:, None]).astype(np.float32)) + zp[:, None].astype(np.float32)
    q = np.where(np.isnan(q), zp[:, None].astype(np.float32), q)  # NaN to the zero point; infinities saturate
    return [np.clip(q, 0, U8_MAX).astype(np.uint8).reshape(x.shape), scale, zp]


def _check_weights(node: Node, w: np.ndarray) -> None:
    lo, hi = WEIGHT_BITS[node.attrs["weight_bits"]]
    if w.size and (int(w.min()) < lo or int(w.max()) > hi):
        raise ValueError(f"{node.op} %{node.name}: weight_bits={node.attrs['weight_bits']} holds weights in "
                         f"[{lo}, {hi}], but {node.inputs[3].name} spans [{int(w.min())}, {int(w.max())}]")


def _shifted_weights(node: Node, w: np.ndarray, channel_axis: int) -> np.ndarray:
    """w - weight_zero_point along the output-channel axis (int64; w itself when the op has no weight zero point)."""
    zp = weight_zero_points(node.attrs, w.shape[channel_axis])
    if not any(zp):
        return w
    shape = [1] * w.ndim
    shape[channel_axis] = -1
    return w.astype(np.int64) - np.asarray(zp, np.int64).reshape(shape)


def _centered(node: Node, x: np.ndarray, zp: np.ndarray, lead: tuple[int, ...]) -> np.ndarray:
    """x - x_zero_point as int64, the zero point per tensor or per row (last axis)."""
    info = np.iinfo(x.dtype)
    if zp.size and (int(zp.min()) < info.min or int(zp.max()) > info.max):
        raise ValueError(f"{node.op} %{node.name}: x_zero_point must lie in [{info.min}, {info.max}] for "
                         f"{x.dtype}, got [{int(zp.min())}, {int(zp.max())}]")
    z = zp.astype(np.int64).reshape(lead + (1,)) if zp.size > 1 else np.int64(zp.reshape(-1)[0])
    return x.astype(np.int64) - z


def finish(node: Node, acc: np.ndarray, x_scale: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None,
           channel_axis: int) -> np.ndarray:
    """Dequantize int accumulators (channel along `channel_axis`), add the bias, requantize if the op says so."""
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    sw = w_scale.astype(np.float32).reshape(shape)
    sx = x_scale.astype(np.float32)
    sx = sx.reshape(acc.shape[:-1] + (1,)) if sx.size > 1 else sx.reshape(())
    y = ((sx * sw).astype(np.float32) * acc.astype(np.float32)).astype(np.float32)
    if bias is not None:
        y = (y + bias.astype(np.float32).reshape(shape)).astype(np.float32)
    a = node.attrs
    if a["dtype"] == "f32":
        return y
    dt = np.dtype(np.uint8 if a["dtype"] == "u8" else np.int8)
    info = np.iinfo(dt)
    s_out = np.asarray(a["out_scale"], np.float32)
    zp_out = np.asarray(a["out_zero_point"], np.float32)
    if s_out.size > 1:
        s_out, zp_out = s_out.reshape(shape), zp_out.reshape(shape)
    q = np.rint((y / s_out).astype(np.float32)) + zp_out
    q = np.where(np.isnan(q), zp_out, q)  # a NaN y (from a NaN bias or scale) requantizes to the zero point
    return np.clip(q, info.min, info.max).astype(dt)


def exact_in_f64(xc: np.ndarray, w: np.ndarray, k: int) -> bool:
    """Whether sums of `k` products of xc's and w's entries stay below 2**53 in magnitude.

    Then a float64 product (BLAS) of the integer operands is exact in any summation order: every product and
    partial sum is an integer that float64 represents exactly. With 8-bit operands that holds up to
    K = 2**53 / (255 * 128), about 2.7e11.
    """
    if xc.size == 0 or w.size == 0:
        return True
    return k * int(np.abs(xc).max()) * int(np.abs(w.astype(np.int64)).max()) < 2**53


def _qlinear(node: Node, xs: Arrays) -> np.ndarray:
    x, sx, zx, w, sw = xs[:5]
    _check_weights(node, w)
    w_nk = _shifted_weights(node, w if node.op == "qlinear" else w.T, 0)
    xc = _centered(node, x, zx, x.shape[:-1])
    if exact_in_f64(xc, w_nk, w_nk.shape[1]):
        acc = (xc.astype(np.float64) @ w_nk.astype(np.float64).T).astype(np.int64)
    else:
        acc = xc @ w_nk.astype(np.int64).T
    return finish(node, acc, sx, sw, xs[5] if len(xs) > 5 else None, acc.ndim - 1)


def _qconv2d(node: Node, xs: Arrays) -> np.ndarray:
    x, sx, zx, w, sw = xs[:5]
    _check_weights(node, w)
    w = _shifted_weights(node, w, 0)
    conv_attrs: dict[str, Any] = {k: node.attrs[k] for k in ("strides", "pads", "dilations", "groups")}
    out = Value(f"{node.name}.acc", TensorType(node.outputs[0].type.shape, i64))
    conv = Node("conv2d", [], conv_attrs, [out])
    xc = _centered(node, x, zx, ())
    dt = np.float64 if exact_in_f64(xc, w, int(np.prod(w.shape[1:]))) else np.int64
    acc = NN_RULES["conv2d"](conv, [xc.astype(dt), w.astype(dt)])
    return finish(node, acc, sx, sw, xs[5] if len(xs) > 5 else None, 1)


def _qadd(node: Node, xs: Arrays) -> np.ndarray:
    """clip(rint((sa * f32(a - za) + sb * f32(b - zb)) / out_scale) + out_zero_point): dequantize, add, quantize."""
    a, sa, za, b, sb, zb = xs
    fa = (a.astype(np.int32) - np.int32(za.reshape(-1)[0])).astype(np.float32) * np.float32(sa.reshape(-1)[0])
    fb = (b.astype(np.int32) - np.int32(zb.reshape(-1)[0])).astype(np.float32) * np.float32(sb.reshape(-1)[0])
    dt = np.dtype(np.uint8 if node.attrs["dtype"] == "u8" else np.int8)
    info = np.iinfo(dt)
    q = np.rint((fa + fb) / np.float32(node.attrs["out_scale"])) + np.float32(node.attrs["out_zero_point"])
    q = np.where(np.isnan(q), np.float32(node.attrs["out_zero_point"]), q)  # a NaN scale requantizes to the zero point
    return np.clip(q, info.min, info.max).astype(dt)


INTEGER_RULES = {
    "quantize-dynamic": _quantize_dynamic,
    "qlinear": _qlinear,
    "qmatmul": _qlinear,
    "qconv2d": _qconv2d,
    "qadd": _qadd,
}
