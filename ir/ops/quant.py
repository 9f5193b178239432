"""Quantization ops: quantize (float -> int8/uint8) and dequantize (int -> f32).

dequantize has two forms. With scales as attributes (`scale`, `zero_point`, `axis`): per tensor or per
axis. With a second input, an f32 scale tensor, and `group_size` G >= 1 (ONNX DequantizeLinear opset 21
with `block_size`): the scale is shaped like x except along `axis`, where it has ceil(x.shape[axis] / G)
entries, and each entry is repeated over G consecutive elements of that axis (the last group may be
shorter); symmetric only (no zero point), so y = f32(x) * repeat(scale, G, axis)[..., :x.shape[axis]].
"""

from __future__ import annotations

from typing import Any

from ..dtypes import DTYPES, f32
from ..types import QuantInfo, TensorType
from .registry import Attr, attr_error, dtype_error, register_op, shape_error
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


_DQ_ATTRS = (
    Attr("scale", "floats", ()),
    Attr("zero_point", "ints", ()),
    Attr("axis", "int?", None),
    Attr("group_size", "int", 0),
)


def group_scale_shape(x: tuple[int, ...], axis: int, group_size: int) -> tuple[int, ...]:
    """The shape of the scale tensor of a grouped dequantize of `x`: ceil(x[axis] / group_size) along axis."""
    return tuple(-(-d // group_size) if i == axis else d for i, d in enumerate(x))


def _grouped(x: TensorType, s: TensorType, a: dict[str, Any]) -> None:
    """Check the grouped form: a scale tensor input, group_size >= 1, an axis, no attribute scales."""
    g = a["group_size"]
    if g < 1:
        raise attr_error(f"dequantize: a scale input needs group_size >= 1 (the group length along axis), got {g}")
    if a["scale"] or a["zero_point"]:
        raise attr_error("dequantize: with a scale input, the scale and zero_point attributes must be empty "
                         "(grouped dequantization is symmetric)")
    if x.rank == 0:
        raise shape_error("dequantize: grouped dequantization needs x of rank >= 1")
    if a["axis"] is None:
        raise attr_error("dequantize: group_size needs the axis the groups run along")
    if s.dtype != f32:
        raise dtype_error(f"dequantize: the scale input must be f32, got {s.dtype.name}")
    axis = norm_axis("dequantize", a["axis"], x.rank)
    want = group_scale_shape(x.shape, axis, g)
    if s.shape != want:
        raise shape_error(f"dequantize: x {list(x.shape)} in groups of {g} along axis {axis} needs a scale of "
                          f"shape {list(want)}, got {list(s.shape)}")


@register_op("dequantize", ("x", "scale?"), _DQ_ATTRS,
             doc="x_real = (x - zero_point) * scale as f32, per tensor or per axis; or x * scale repeated in "
                 "groups of group_size along axis, the scale an f32 input.")
def _dequantize(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    if x.dtype.name not in ("i8", "u8", "i32", "i4"):
        raise dtype_error(f"dequantize: input must be i8, u8, i4 or i32, got {x.dtype.name}")
    if len(ts) > 1:
        _grouped(x, ts[1], a)
    elif a["group_size"]:
        raise attr_error(f"dequantize: group_size={a['group_size']} needs the scale as a second input "
                         "(an f32 tensor, one scale per group)")
    elif not a["scale"]:
        raise attr_error("dequantize: no scale: give the scale attribute (per tensor or per axis) or a scale input")
    else:
        quant_info("dequantize", x, a, x.dtype.bits)
    return [TensorType(x.shape, f32)]
