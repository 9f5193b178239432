"""Integer ops: dynamic activation quantization and int8 linear / matmul / conv2d with int32 accumulation.

`quantize-dynamic` finds an activation's u8 scale and zero point at run time (ONNX Runtime's
DynamicQuantizeLinear, per tensor or per row). `qlinear`, `qmatmul` (2-D B) and `qconv2d` take a u8
or s8 activation with its scale and zero point and s8 weights with per-output-channel scales,
accumulate acc = sum (x - x_zero_point) * w exactly in int32, and either dequantize,
y = (x_scale * weight_scale) * acc + bias in f32, or requantize y to u8/s8 with per-channel
`out_scale` / `out_zero_point` (round half to even, saturating). `weight_bits` says which weight range
the op holds: 8 is [-128, 127], 7 is [-64, 63] (what the AVX2 and AVX-512BW kernels compute exactly).
`weight_zero_point` (one s8 value per tensor or per output channel; empty means 0) is subtracted from the
weights before the product: acc = sum (x - x_zero_point) * (weight - weight_zero_point), which holds an
asymmetric u8 weight w exactly as weight = w - 128 with weight_zero_point = its zero point - 128.
`qadd` adds two quantized tensors and requantizes (a residual add that stays in int8).
See docs/ir.md, "Integer ops".
"""

from __future__ import annotations

import math
from typing import Any

from ..dtypes import DTYPES, f32, i32, u8
from ..types import TensorType
from . import nn  # noqa: F401  (conv2d, whose attributes and shape rule qconv2d shares)
from .registry import Attr, attr_error, dtype_error, get_op, register_op, shape_error

WEIGHT_BITS = {8: (-128, 127), 7: (-64, 63)}
"""Inclusive s8 weight range of each `weight_bits` value."""
MAX_ACC_K = (2**31 - 1) // (255 * 128)
"""Largest reduction length whose int32 accumulator cannot overflow (|x - zp| <= 255, |w| <= 128)."""
MAX_ACC_K_SHIFTED = (2**31 - 1) // (255 * 255)
"""The same with a weight zero point (|w - weight_zero_point| <= 255)."""
INT_OUT_DTYPES = ("f32", "u8", "i8")
"""What an integer matrix op writes: the dequantized f32, or the requantized u8 / s8."""

_QOPS_ATTRS = (
    Attr("weight_bits", "int", 8, tuple(WEIGHT_BITS)),
    Attr("dtype", "str", "f32", INT_OUT_DTYPES),
    Attr("out_scale", "floats", ()),
    Attr("out_zero_point", "ints", ()),
    Attr("weight_zero_point", "ints", ()),
)
_QOPS_INPUTS = ("x", "x_scale", "x_zero_point", "weight", "weight_scale", "bias?")


def weight_zero_points(attrs: dict[str, Any], channels: int) -> tuple[int, ...]:
    """The op's weight zero point of each of its `channels` output channels (zeros when it has none)."""
    zp = tuple(attrs.get("weight_zero_point", ()))
    return zp * channels if len(zp) == 1 else zp if zp else (0,) * channels


def quant_rows(x: TensorType, granularity: str) -> int:
    """How many scale / zero-point pairs a dynamic quantization of `x` has: 1, or one per row (last axis)."""
    return 1 if granularity == "tensor" else math.prod(x.shape[:-1])


@register_op("quantize-dynamic", ("x",), (Attr("granularity", "str", "tensor", ("tensor", "row")),),
             num_outputs=3,
             doc="(q u8, scale f32 [R], zero_point i32 [R]) with R = 1 or one per row: ONNX Runtime's "
                 "DynamicQuantizeLinear, range widened to include 0, found at run time.")
def _quantize_dynamic(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    if x.dtype != f32:
        raise dtype_error(f"quantize-dynamic: input must be f32, got {x.dtype.name}")
    if x.rank < 1:
        raise shape_error("quantize-dynamic: input must have rank >= 1")
    r = quant_rows(x, a["granularity"])
    return [TensorType(x.shape, u8), TensorType((r,), f32), TensorType((r,), i32)]


def _check_qoperands(op: str, ts: list[TensorType], a: dict[str, Any], rows: int, n: int, k: int) -> None:
    """The checks every integer matrix op shares: operand dtypes, scale shapes, K limit, output quantization."""
    x, xs, xz, w, ws = ts[:5]
    if x.dtype.name not in ("u8", "i8"):
        raise dtype_error(f"{op}: x must be u8 or i8, got {x.dtype.name}")
    if w.dtype.name != "i8":
        raise dtype_error(f"{op}: weight must be i8, got {w.dtype.name}")
    if xs.dtype != f32 or xz.dtype != i32 or ws.dtype != f32:
        raise dtype_error(f"{op}: x_scale and weight_scale must be f32 and x_zero_point i32, got "
                          f"{xs.dtype.name}, {ws.dtype.name}, {xz.dtype.name}")
    if xs.shape not in ((1,), (rows,)) or xz.shape != xs.shape:
        raise shape_error(f"{op}: x_scale {list(xs.shape)} and x_zero_point {list(xz.shape)} must both be [1] "
                          f"or [{rows}] (one per row)")
    if ws.shape != (n,):
        raise shape_error(f"{op}: weight_scale {list(ws.shape)} must be [{n}] (one per output channel)")
    if len(ts) == 6 and (ts[5].shape != (n,) or ts[5].dtype != f32):
        raise shape_error(f"{op}: bias {ts[5]} must be f32[{n}]")
    wzp = a["weight_zero_point"]
    if len(wzp) not in (0, 1, n):
        raise attr_error(f"{op}: weight_zero_point must have 1 or {n} values (one per output channel), got {len(wzp)}")
    if any(not -128 <= z <= 127 for z in wzp):
        raise attr_error(f"{op}: weight_zero_point must lie in [-128, 127], got [{min(wzp)}, {max(wzp)}]")
    limit = MAX_ACC_K_SHIFTED if any(wzp) else MAX_ACC_K
    if k > limit:
        raise shape_error(f"{op}: reduction length {k} exceeds {limit}, where the int32 accumulator may overflow")
    scale, zp = a["out_scale"], a["out_zero_point"]
    if a["dtype"] == "f32":
        if scale or zp:
            raise attr_error(f"{op}: out_scale / out_zero_point are for a u8 or i8 output, not f32")
        return
    if len(scale) not in (1, n) or len(zp) != len(scale):
        raise attr_error(f"{op}: a {a['dtype']} output needs out_scale and out_zero_point of length 1 or {n}, got "
                         f"{len(scale)} and {len(zp)}")
    if any(not s > 0 for s in scale):
        raise attr_error(f"{op}: out_scale must be positive")
    lo, hi = (-128, 127) if a["dtype"] == "i8" else (0, 255)
    if any(not lo <= z <= hi for z in zp):
        raise attr_error(f"{op}: out_zero_point must lie in [{lo}, {hi}] for {a['dtype']}")


@register_op("qlinear", _QOPS_INPUTS, _QOPS_ATTRS,
             doc="int8 linear: (x_scale * weight_scale) * sum_k (x - x_zero_point) * (weight[n, k] - "
                 "weight_zero_point[n]) + bias, "
                 "int32 accumulation, f32 out or requantized to u8/i8; weight is i8 [out, in].")
def _qlinear(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, w = ts[0], ts[3]
    if x.rank < 1 or w.rank != 2 or x.shape[-1] != w.shape[1]:
        raise shape_error(f"qlinear: x {list(x.shape)} and weight {list(w.shape)} must be [..., K] and [N, K]")
    _check_qoperands("qlinear", ts, a, math.prod(x.shape[:-1]), w.shape[0], w.shape[1])
    return [TensorType(x.shape[:-1] + (w.shape[0],), DTYPES[a["dtype"]])]


@register_op("qmatmul", _QOPS_INPUTS, _QOPS_ATTRS,
             doc="int8 matmul with a 2-D B: (x_scale * weight_scale) * sum_k (x - x_zero_point) * (weight[k, n] - "
                 "weight_zero_point[n]) "
                 "+ bias, int32 accumulation, f32 out or requantized to u8/i8; weight is i8 [K, N].")
def _qmatmul(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, w = ts[0], ts[3]
    if x.rank < 2 or w.rank != 2 or x.shape[-1] != w.shape[0]:
        raise shape_error(f"qmatmul: x {list(x.shape)} and weight {list(w.shape)} must be [..., M, K] and [K, N]")
    _check_qoperands("qmatmul", ts, a, math.prod(x.shape[:-1]), w.shape[1], w.shape[0])
    return [TensorType(x.shape[:-1] + (w.shape[1],), DTYPES[a["dtype"]])]


@register_op("qconv2d", _QOPS_INPUTS, (*get_op("conv2d").attrs, *_QOPS_ATTRS),
             doc="int8 2-D convolution (NCHW, weight i8 [C_out, C_in/groups, kH, kW]): int32 accumulation of "
                 "(x - x_zero_point) * (weight - weight_zero_point[c]), then (x_scale * weight_scale[c]) * acc + "
                 "bias[c] in f32, or requantized to u8/i8; x_scale / x_zero_point per tensor ([1]).")
def _qconv2d(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, w = ts[0], ts[3]
    conv_attrs = {k: a[k] for k in ("strides", "pads", "dilations", "groups")}
    shape = get_op("conv2d").infer([TensorType(x.shape, f32), TensorType(w.shape, f32)], conv_attrs)[0].shape
    _check_qoperands("qconv2d", ts, a, 1, w.shape[0], math.prod(w.shape[1:]))
    return [TensorType(shape, DTYPES[a["dtype"]])]


_QADD_INPUTS = ("a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point")


@register_op("qadd", _QADD_INPUTS,
             (Attr("dtype", "str", "u8", ("u8", "i8")), Attr("out_scale", "float", 1.0),
              Attr("out_zero_point", "int", 0)),
             doc="int8 add of two quantized tensors of one shape (per-tensor scales): y = clip(round((a_scale * "
                 "float32(a - a_zero_point) + b_scale * float32(b - b_zero_point)) / out_scale) + out_zero_point) "
                 "in u8 / i8, float32 in that order: dequantize, add, quantize as one op.")
def _qadd(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, xs, xz, y, ys, yz = ts
    for name, t in (("a", x), ("b", y)):
        if t.dtype.name not in ("u8", "i8"):
            raise dtype_error(f"qadd: {name} must be u8 or i8, got {t.dtype.name}")
    if x.shape != y.shape:
        raise shape_error(f"qadd: a {list(x.shape)} and b {list(y.shape)} must have one shape")
    for name, s, z in (("a", xs, xz), ("b", ys, yz)):
        if s.dtype != f32 or z.dtype != i32 or s.shape != (1,) or z.shape != (1,):
            raise dtype_error(f"qadd: {name}_scale must be f32[1] and {name}_zero_point i32[1], got {s} and {z}")
    if not a["out_scale"] > 0:
        raise attr_error(f"qadd: out_scale must be positive, got {a['out_scale']}")
    lo, hi = (-128, 127) if a["dtype"] == "i8" else (0, 255)
    if not lo <= a["out_zero_point"] <= hi:
        raise attr_error(f"qadd: out_zero_point must lie in [{lo}, {hi}] for {a['dtype']}, got {a['out_zero_point']}")
    return [TensorType(x.shape, DTYPES[a["dtype"]])]
