"""ONNX forms of the integer ops (ir/ops/integer.py), in standard operators with the same arithmetic.

`quantize-dynamic` becomes the DynamicQuantizeLinear formula over rows (ReduceMin / ReduceMax, Div,
Round, Clip, Cast), which also covers the per-row form DynamicQuantizeLinear lacks. `qlinear` /
`qmatmul` become MatMulInteger on the raw operands, minus x_zero_point * column sums of the weight (an
i32 constant), then (x_scale * weight_scale) * acc + bias in float, and QuantizeLinear for a u8/i8
output. `qconv2d` becomes ConvInteger with the zero point, then the same scaling along axis 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from onnx import TensorProto

from .graph import Node


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
    colsum = w_kn.astype(np.int32).sum(axis=0, dtype=np.int32)
    lead = list(x.type.shape[:-1])
    acc = w.add("MatMulInteger", [ins[0], w.const(np.ascontiguousarray(w_kn), f"{out}.weight_kn")])
    rows = n.inputs[2].type.shape[0]
    zp = w.add("Reshape", [ins[2], w.ints(lead + [1] if rows > 1 else [1], f"{out}.zp")])
    acc = w.add("Sub", [acc, w.add("Mul", [zp, w.const(colsum, f"{out}.colsum")])])
    _scale_and_requantize(w, n, ins, acc, lead, len(lead), out)


def _qconv2d(w: Writer, n: Node, ins: list[str], out: str) -> None:
    a = n.attrs
    x_dt = TensorProto.UINT8 if n.inputs[0].type.dtype.name == "u8" else TensorProto.INT8
    zp = w.add("Cast", [w.add("Reshape", [ins[2], w.ints([], f"{out}.scalar")])], to=x_dt)
    kh, kw = n.inputs[3].type.shape[2:]
    acc = w.add("ConvInteger", [ins[0], ins[3], zp], kernel_shape=[kh, kw], strides=list(a["strides"]),
                pads=[a["pads"][0], a["pads"][1], a["pads"][2], a["pads"][3]], dilations=list(a["dilations"]),
                group=a["groups"])
    nb = n.outputs[0].type.shape[0]
    _scale_and_requantize(w, n, ins, acc, [nb, 1, 1], 1, out)


INTEGER_EXPORTERS: dict[str, Callable[[Any, Node, list[str], str], None]] = {
    "quantize-dynamic": _quantize_dynamic,
    "qlinear": _qlinear,
    "qmatmul": _qlinear,
    "qconv2d": _qconv2d,
}
