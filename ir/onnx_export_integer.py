"""ONNX forms of the integer ops (ir/ops/integer.py), in standard operators with the same arithmetic.

`quantize-dynamic` becomes the DynamicQuantizeLinear formula over rows (ReduceMin / ReduceMax, Div,
Round, Clip, Cast), which also covers the per-row form DynamicQuantizeLinear lacks. `qlinear` /
`qmatmul` become MatMulInteger on the raw operands (and the weight zero point as B's), minus
x_zero_point * column sums of the (shifted) weight (an i32 constant), then (x_scale * weight_scale) * acc
+ bias in float, and QuantizeLinear for a u8/i8 output. `qconv2d` becomes ConvInteger with the zero
points, then the same scaling along axis 1. `qadd` becomes its float32 steps (Cast, Sub, Cast, Mul per
operand, Add) and QuantizeLinear.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from onnx import TensorProto

from .graph import Node, Value
from .ops.integer import weight_zero_points


class Writer(Protocol):
    """What the exporters use of onnx_export's writer."""

    opset: int

    def const(self, arr: np.ndarray, hint: str) -> str: ...  # noqa: D102

    def add(self, op_type: str, inputs: list[str], outputs: list[str] | None = None, **attrs: Any) -> str: ...  # noqa: D102

    def ints(self, values: Any, hint: str) -> str: ...  # noqa: D102


def _reduce(w: Writer, op: str, x: str) -> str:
    """Reduce over axis 1 of [R, L], keeping it (axes as input from opset 18)."""
    if w.opset >= 18:
        return w.add(op, [x, w.ints([1], f"{x}.axes")], keepdims=1)
    return w.add(op, [x], axes=[1], keepdims=1)


def _quantize_dynamic(w: Writer, n: Node, ins: list[str], out: str) -> None:
    x = n.inputs[0]
    rows = n.outputs[1].type.shape[0]
    flat = w.add("Reshape", [ins[0], w.ints([rows, -1], f"{out}.rows")])
    zero, qmax = w.const(np.float32(0), f"{out}.zero"), w.const(np.float32(255), f"{out}.qmax")
    lo = w.add("Min", [_reduce(w, "ReduceMin", flat), zero])
    hi = w.add("Max", [_reduce(w, "ReduceMax", flat), zero])
    span = w.add("Sub", [hi, lo])
    scale = w.add("Where", [w.add("Equal", [span, zero]), w.const(np.float32(1), f"{out}.one"),
                            w.add("Div", [span, qmax])])
    zp = w.add("Round", [w.add("Clip", [w.add("Sub", [zero, w.add("Div", [lo, scale])]), zero, qmax])])
    q = w.add("Clip", [w.add("Add", [w.add("Round", [w.add("Div", [flat, scale])]), zp]), zero, qmax])
    w.add("Reshape", [w.add("Cast", [q], to=TensorProto.UINT8), w.ints(list(x.type.shape), f"{out}.shape")],
          [out])
    w.add("Reshape", [scale, w.ints([rows], f"{out}.r")], [n.outputs[1].name])
    w.add("Reshape", [w.add("Cast", [zp], to=TensorProto.INT32), w.ints([rows], f"{out}.r")], [n.outputs[2].name])


def _scale_and_requantize(w: Writer, n: Node, ins: list[str], acc: str, lead: list[int], axis: int,
                          out: str) -> None:
    """(x_scale * weight_scale) * acc + bias along `axis`, then QuantizeLinear for a u8/i8 output."""
    rank = len(lead) + 1
    chan = [1] * rank
    chan[axis] = -1
    rows = n.inputs[1].type.shape[0]
    xs = w.add("Reshape", [ins[1], w.ints(lead + [1] if rows > 1 else [1], f"{out}.xs")])
    scale = w.add("Mul", [xs, w.add("Reshape", [ins[4], w.ints(chan, f"{out}.chan")])])
    a = n.attrs
    y_name = out if a["dtype"] == "f32" and len(ins) < 6 else None
    y = w.add("Mul", [scale, w.add("Cast", [acc], to=TensorProto.FLOAT)], [y_name] if y_name else None)
    if len(ins) == 6:
        y = w.add("Add", [y, w.add("Reshape", [ins[5], w.ints(chan, f"{out}.chan")])],
                  [out] if a["dtype"] == "f32" else None)
    if a["dtype"] == "f32":
        return
    per_channel = len(a["out_scale"]) > 1
    dt = np.uint8 if a["dtype"] == "u8" else np.int8
    s = np.asarray(a["out_scale"], np.float32)
    z = np.asarray(a["out_zero_point"]).astype(dt)
    params = [w.const(s if per_channel else s.reshape(()), f"{out}.out_scale"),
              w.const(z if per_channel else z.reshape(()), f"{out}.out_zero_point")]
    w.add("QuantizeLinear", [y] + params, [out], axis=axis if per_channel else None)


def _qlinear(w: Writer, n: Node, ins: list[str], out: str) -> None:
    x, weight = n.inputs[0], n.inputs[3]
    if weight.data is None:
        raise ValueError(f"{n.op} exports with a constant weight only")
    w_kn = weight.data.T if n.op == "qlinear" else weight.data
    wzp = np.asarray(weight_zero_points(n.attrs, w_kn.shape[1]), np.int32)
    colsum = (w_kn.astype(np.int32) - wzp).sum(axis=0, dtype=np.int32)
    lead = list(x.type.shape[:-1])
    operands = [ins[0], w.const(np.ascontiguousarray(w_kn), f"{out}.weight_kn")]
    if wzp.any():  # B's zero point per column; A's is subtracted below (it may be per row)
        operands += ["", w.const(wzp.astype(np.int8), f"{out}.weight_zero_point")]
    acc = w.add("MatMulInteger", operands)
    rows = n.inputs[2].type.shape[0]
    zp = w.add("Reshape", [ins[2], w.ints(lead + [1] if rows > 1 else [1], f"{out}.zp")])
    acc = w.add("Sub", [acc, w.add("Mul", [zp, w.const(colsum, f"{out}.colsum")])])
    _scale_and_requantize(w, n, ins, acc, lead, len(lead), out)


def _qconv2d(w: Writer, n: Node, ins: list[str], out: str) -> None:
    a = n.attrs
    x_dt = TensorProto.UINT8 if n.inputs[0].type.dtype.name == "u8" else TensorProto.INT8
    zp = w.add("Cast", [w.add("Reshape", [ins[2], w.ints([], f"{out}.scalar")])], to=x_dt)
    co, cg, kh, kw = n.inputs[3].type.shape
    groups = a["groups"]
    window = {"kernel_shape": [kh, kw], "strides": list(a["strides"]), "pads": list(a["pads"]),
              "dilations": list(a["dilations"]), "group": groups}
    wzp = np.asarray(a["weight_zero_point"], np.int32)
    per_tensor = wzp.size == 1 and wzp.any()
    operands = [ins[0], ins[3], zp]
    if per_tensor:  # ONNX Runtime's ConvInteger takes one weight zero point per tensor only
        operands.append(w.const(wzp.astype(np.int8).reshape(()), f"{out}.weight_zero_point"))
    acc = w.add("ConvInteger", operands, **window)
    if wzp.size > 1 and wzp.any():  # minus t[c] * the window sums of x - x_zero_point of c's group
        ones = w.const(np.ones((groups, cg, kh, kw), np.int8 if x_dt == TensorProto.INT8 else np.uint8),
                       f"{out}.ones")
        sums = w.add("ConvInteger", [ins[0], ones, zp], **window)
        if groups > 1:
            group_of = np.arange(co, dtype=np.int64) // (co // groups)
            sums = w.add("Gather", [sums, w.const(group_of, f"{out}.group_of")], axis=1)
        acc = w.add("Sub", [acc, w.add("Mul", [sums, w.const(wzp.reshape(1, co, 1, 1), f"{out}.weight_zero_point")])])
    nb = n.outputs[0].type.shape[0]
    _scale_and_requantize(w, n, ins, acc, [nb, 1, 1], 1, out)


_INT8_TYPES = (np.dtype(np.int8), np.dtype(np.uint8))


def narrow_constant(w: Writer, data: np.ndarray, hint: str) -> tuple[str, np.dtype] | None:
    """An int8 (else uint8) initializer holding integer `data` when its values fit, with that dtype; else None."""
    for dt in _INT8_TYPES:
        info = np.iinfo(dt)
        if data.size == 0 or (info.min <= int(data.min()) and int(data.max()) <= info.max):
            return w.const(np.ascontiguousarray(data.astype(dt)), f"{hint}.{dt.name}"), dt
    return None


def _scalar_zero_point(w: Writer, z: Value, dt: np.dtype, hint: str) -> str | None:
    """ONNX scalar of dtype `dt` equal to i32 one-element `z`: a constant, or an 8-bit value widened by cast."""
    while z.type.numel == 1 and z.producer is not None and z.producer.op == "reshape":
        z = z.producer.inputs[0]
    if z.producer is not None and z.producer.op == "cast" and z.producer.inputs[0].is_constant:
        z = z.producer.inputs[0]  # a widened constant: its value
    if z.type.numel != 1:
        return None
    if z.is_constant:
        v = int(np.asarray(z.data).reshape(-1)[0])
        info = np.iinfo(dt)
        return w.const(np.asarray(v, dt), f"{hint}.zero_point") if info.min <= v <= info.max else None
    p = z.producer
    if p is None or p.op != "cast" or p.inputs[0].type.dtype.np_dtype != dt:
        return None
    return w.add("Reshape", [p.inputs[0].name, w.ints([], f"{hint}.scalar")])


def narrow_operand(w: Writer, v: Value, hint: str) -> tuple[str, str, np.dtype] | None:
    """(8-bit operand, its scalar zero point or "", dtype) when i32 `v` is an 8-bit tensor widened: `cast(q)`,
    `cast(q) - z` with one z, or a constant within int8 / uint8 (what MatMulInteger / ConvInteger import to)."""
    if v.is_constant:
        c = narrow_constant(w, np.asarray(v.data), hint)
        return None if c is None else (c[0], "", c[1])
    p = v.producer
    if p is not None and p.op == "cast" and p.inputs[0].type.dtype.np_dtype in _INT8_TYPES:
        src = p.inputs[0]
        if src.is_constant:  # written as an initializer here: the writer has not seen it
            return w.const(np.asarray(src.data), f"{hint}.{src.type.dtype.name}"), "", src.type.dtype.np_dtype
        return src.name, "", src.type.dtype.np_dtype
    if p is not None and p.op == "sub" and not p.inputs[0].is_constant:
        base = narrow_operand(w, p.inputs[0], hint)
        if base is not None and not base[1]:
            z = _scalar_zero_point(w, p.inputs[1], base[2], hint)
            return None if z is None else (base[0], z, base[2])
    return None


def integer_product(w: Writer, op_type: str, a: Value, b: Value | np.ndarray, hint: str) -> str | None:
    """`op_type` (MatMulInteger / ConvInteger) of i32 operands that are 8-bit tensors widened, on the 8-bit
    tensors and their zero points; None when either operand is not (`b` an array: a constant weight as laid out)."""
    na = narrow_operand(w, a, f"{hint}.a")
    if isinstance(b, np.ndarray):
        c = narrow_constant(w, b, f"{hint}.b")
        nb = None if c is None else (c[0], "", c[1])
    else:
        nb = narrow_operand(w, b, f"{hint}.b")
    if na is None or nb is None:
        return None
    ins = [na[0], nb[0], na[1], nb[1]]
    while not ins[-1]:
        ins.pop()
    return w.add(op_type, ins)


def _qadd(w: Writer, n: Node, ins: list[str], out: str) -> None:
    def scalar(name: str, hint: str) -> str:
        return w.add("Reshape", [name, w.ints([], f"{out}.{hint}.scalar")])

    def dequantized(x: str, scale: str, zp: str, tag: str) -> str:
        centered = w.add("Sub", [w.add("Cast", [x], to=TensorProto.INT32), scalar(zp, f"{tag}_zp")])
        return w.add("Mul", [w.add("Cast", [centered], to=TensorProto.FLOAT), scalar(scale, f"{tag}_scale")])

    y = w.add("Add", [dequantized(*ins[:3], "a"), dequantized(*ins[3:], "b")])
    a = n.attrs
    dt = np.uint8 if a["dtype"] == "u8" else np.int8
    w.add("QuantizeLinear", [y, w.const(np.float32(a["out_scale"]), f"{out}.out_scale"),
                             w.const(np.asarray(a["out_zero_point"]).astype(dt), f"{out}.out_zero_point")], [out])


INTEGER_EXPORTERS: dict[str, Callable[[Any, Node, list[str], str], None]] = {
    "quantize-dynamic": _quantize_dynamic,
    "qlinear": _qlinear,
    "qmatmul": _qlinear,
    "qconv2d": _qconv2d,
    "qadd": _qadd,
}
