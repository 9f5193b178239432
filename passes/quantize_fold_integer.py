"""Rule 5 of quantize-fold: integer products of a dynamically quantized activation (ONNX Runtime's dynamic form).

ONNX Runtime's `quantize_dynamic` writes DynamicQuantizeLinear -> MatMulInteger / ConvInteger -> Cast -> Mul by
(x_scale * w_scale), which imports (ir/onnx_ops_quant.py) as

    q, s, z = quantize-dynamic(x)                       (per tensor)
    acc = linear | matmul | conv2d(cast_i32(q) - cast_i32(z), W_i32)
    y = cast_f32(acc) * (reshape(s) * w_scale)

an exact i32 product that no int8 kernel runs. It folds into `qlinear` / `qmatmul` / `qconv2d(q, s, z, W_s8,
w_scale)`, whose reference semantics are the same float32 steps, f32(x_scale * w_scale) * f32(acc): exact when
the weights fit the `weight_bits` range (ONNX Runtime's s8 weights fit 8 bits; for 7 bits each channel is
re-quantized as rule 1 does). `w_scale` is a constant, per tensor or per output channel. Asymmetric weights
(u8 with a zero point, `weight_type=QuantType.QUInt8`: W_i32 wider than s8) keep that zero point as the op's
`weight_zero_point` with 8-bit weights, exactly; with 7 bits they are re-quantized like the others.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node, Value
from ..ir.ops.registry import get_op
from .integer_weights import FOLD_OPS, fit_weight, new_const, shifted_into_s8

SCALAR_PATH_OPS = ("reshape", "cast")
"""Ops a scalar scale or zero point may pass through between quantize-dynamic and its use."""


def _made_by(v: Value, op: str, **attrs: object) -> Node | None:
    """The producer of `v` when it is `op` with these attrs (a single-output node)."""
    n = v.producer
    if n is None or n.op != op or len(n.outputs) != 1 or any(n.attrs.get(k) != a for k, a in attrs.items()):
        return None
    return n


def _source(v: Value) -> Value:
    """`v` followed back through reshapes and casts (which keep a scale's or a zero point's value)."""
    while v.producer is not None and v.producer.op in SCALAR_PATH_OPS and len(v.producer.inputs) == 1:
        v = v.producer.inputs[0]
    return v


def _dynamic_activation(d: Value) -> tuple[Node, Value] | str:
    """(quantize-dynamic node, its zero point as read) for d = cast_i32(q) - zero point, or why not."""
    sub = _made_by(d, "sub")
    cast = _made_by(sub.inputs[0], "cast", dtype="i32") if sub is not None else None
    qd = cast.inputs[0].producer if cast is not None else None
    if sub is None or qd is None or qd.op != "quantize-dynamic" or cast.inputs[0] is not qd.outputs[0]:
        return "its activation is not quantize-dynamic's u8 minus its zero point"
    if qd.attrs["granularity"] != "tensor":
        return "its activation is quantized per row (the imported form is per tensor)"
    if _source(sub.inputs[1]) is not qd.outputs[2]:
        return "the zero point subtracted is not the quantize-dynamic's"
    return qd, sub.inputs[1]


def _weight_scale(ss: Value, qd: Node, channels: int, op: str) -> np.ndarray | str:
    """Per-channel f32 scales of ss = x_scale * w_scale with a constant w_scale, or why not."""
    m = _made_by(ss, "mul")
    if m is None:
        return "its scale is not x_scale * w_scale"
    for xs, ws in (m.inputs, m.inputs[::-1]):
        if _source(xs) is qd.outputs[1] and ws.is_constant:
            w = np.asarray(ws.data, np.float32)
            channel_shape = (channels,) if op != "conv2d" else (channels, 1, 1)
            if w.size == 1:
                return np.full(channels, w.reshape(-1)[0], np.float32)
            if w.shape[-len(channel_shape):] == channel_shape and w.size == channels:
                return w.reshape(-1).copy()
            return f"its weight scale has shape {list(w.shape)}, not one per output channel"
    return "its scale is not the quantize-dynamic's x_scale times a constant"


def _product(f: Value) -> Node | None:
    """The matrix product that `f` = cast_f32(product) converts, if it is one."""
    cast = _made_by(f, "cast", dtype="f32")
    acc = cast.inputs[0].producer if cast is not None else None
    return acc if acc is not None and acc.op in FOLD_OPS and len(acc.outputs) == 1 else None


def _why_not_product(acc: Node) -> str | None:
    if len(acc.inputs) != 2 or not acc.inputs[1].is_constant:
        return "its weight is not a constant (or it has a bias)"
    if acc.inputs[1].type.dtype.name != "i32" or acc.outputs[0].type.dtype.name != "i32":
        return "it is not an i32 product"
    if acc.op == "matmul" and (acc.inputs[1].type.rank != 2 or acc.inputs[0].type.rank < 2):
        return "it is not a matmul by a 2-D B"
    return None


def _fold_one(graph: Graph, mul: Node, users: dict[int, list[Node]], bits: int) -> tuple[Node | None, str]:
    """The integer op replacing `mul` (y = cast_f32(acc) * scale), or (None, why not; '' when not this form)."""
    pairs = [(f, ss, acc) for f, ss in (mul.inputs, mul.inputs[::-1]) if (acc := _product(f)) is not None]
    if len(mul.inputs) != 2 or not pairs:
        return None, ""
    f, ss, acc = pairs[0]
    why = _why_not_product(acc)
    found = _dynamic_activation(acc.inputs[0]) if why is None else why
    if isinstance(found, str):
        return None, f"{acc.op} %{acc.name}: {found}"
    qd, _ = found
    outputs = {id(v) for v in graph.outputs}
    if (len(users.get(id(acc.outputs[0]), [])) != 1 or len(users.get(id(f), [])) != 1
            or id(acc.outputs[0]) in outputs or id(f) in outputs):
        return None, f"{acc.op} %{acc.name}: its i32 result has other readers"
    axis_c = acc.inputs[1].type.rank - 1 if acc.op == "matmul" else 0
    scale = _weight_scale(ss, qd, acc.inputs[1].type.shape[axis_c], acc.op)
    if isinstance(scale, str):
        return None, f"{acc.op} %{acc.name}: {scale}"
    w_int = np.asarray(acc.inputs[1].data)
    zero_point: tuple[int, ...] = ()
    if bits == 8 and (w_int.min(initial=0) < -128 or w_int.max(initial=0) > 127):  # asymmetric: keep its zero point
        shifted = shifted_into_s8(w_int, axis_c)
        if isinstance(shifted, str):
            return None, f"{acc.op} %{acc.name}: its weights do not fit int8 with a zero point: {shifted}"
        w_int, zero_point = shifted
    sparsity = acc.inputs[1].type.sparsity if not zero_point else None  # shifted, zeros are zeros no longer
    w = fit_weight(w_int, scale, axis_c, bits, sparsity)  # 7 bits: re-quantized if need be
    wv = new_const(graph, w.data, f"{acc.inputs[1].name}.s8")
    ws = new_const(graph, w.scale, f"{acc.inputs[1].name}.scale")
    attrs = {k: acc.attrs[k] for k in ("strides", "pads", "dilations", "groups")} if acc.op == "conv2d" else {}
    opdef = get_op(FOLD_OPS[acc.op])
    attrs = opdef.normalize_attrs({**attrs, "weight_bits": bits, "weight_zero_point": zero_point})
    inputs = [qd.outputs[0], qd.outputs[1], qd.outputs[2], wv, ws]
    (t,) = opdef.infer([v.type for v in inputs], attrs)
    if t != mul.outputs[0].type:
        return None, f"{acc.op} %{acc.name}: the integer op would give {t}, not {mul.outputs[0].type}"
    folded = Node(FOLD_OPS[acc.op], inputs, attrs, [mul.outputs[0]], mul.meta)
    folded.meta["quantize_fold"] = {"weight_bits": bits, "extra_weight_error": w.extra_error,
                                    "activation": "dynamic"}
    return folded, ""


def fold_integer_products(graph: Graph, bits: int) -> tuple[list[str], list[str]]:
    """Fold every eligible dequantized i32 product of a quantize-dynamic activation into an integer op:
    (names of the folded products, reasons for those left)."""
    folded: list[str] = []
    kept: list[str] = []
    users = graph.users()
    for mul in [n for n in graph.nodes if n.op == "mul"]:
        new, why = _fold_one(graph, mul, users, bits)
        if new is None:
            if why:
                kept.append(why)
            continue
        graph.nodes[graph.nodes.index(mul)] = new
        folded.append(mul.name)
    return folded, kept
