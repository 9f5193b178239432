"""Quantization ops: quantize (float -> int8/uint8) and dequantize (int -> f32)."""

from __future__ import annotations

from typing import Any

from ..dtypes import DTYPES, f32
from ..types import QuantInfo, TensorType
from .registry import Attr, attr_error, dtype_error, register_op
from .shape_ops import norm_axis

_QATTRS = (
    Attr("scale", "floats"),
    Attr("zero_point", "ints"),
    Attr("axis", "int?", None),
)


def quant_info(op: str, x: TensorType, a: dict[str, Any], bits: int) -> QuantInfo:
    """The QuantInfo that `a` (scale, zero_point, axis) describes for tensor `x`."""
    scale, zp, axis = a["scale"], a["zero_point"], a["axis"]
    if len(scale) != len(zp):
        raise attr_error(f"{op}: {len(scale)} scales but {len(zp)} zero points")
    if any(not s > 0 for s in scale):
        raise attr_error(f"{op}: scales must be positive, got {list(scale)[:8]}")
    if axis is None:
        if len(scale) != 1:
            raise attr_error(f"{op}: per-tensor quantization takes one scale, got {len(scale)}")
    else:
        axis = norm_axis(op, axis, x.rank)
        if len(scale) != x.shape[axis]:
            raise attr_error(
                f"{op}: axis {axis} has {x.shape[axis]} channels but {len(scale)} scales were given"
            )
    return QuantInfo(tuple(scale), tuple(zp), bits, axis)


@register_op("quantize", ("x",), (*_QATTRS, Attr("dtype", "str", "i8", ("i8", "u8"))),
             doc="q = clip(round_half_even(x / scale) + zero_point) in int8 or uint8, per tensor or per axis.")
def _quantize(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    if not x.dtype.is_float:
        raise dtype_error(f"quantize: input must be floating point, got {x.dtype.name}")
    dt = DTYPES[a["dtype"]]
    lo, hi = (-128, 127) if dt.is_signed else (0, 255)
    if any(not lo <= z <= hi for z in a["zero_point"]):
        raise attr_error(f"quantize: zero points must lie in [{lo}, {hi}] for {dt.name}")
    return [TensorType(x.shape, dt, quant=quant_info("quantize", x, a, 8))]


@register_op("dequantize", ("x",), _QATTRS, doc="x_real = (x - zero_point) * scale as f32, per tensor or per axis.")
def _dequantize(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    if x.dtype.name not in ("i8", "u8", "i32", "i4"):
        raise dtype_error(f"dequantize: input must be i8, u8, i4 or i32, got {x.dtype.name}")
    quant_info("dequantize", x, a, x.dtype.bits)
    return [TensorType(x.shape, f32)]
