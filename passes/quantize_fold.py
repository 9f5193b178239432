"""quantize-fold: Q/DQ around matrix ops folded into the integer ops (ir/ops/integer.py).

Rules, per linear / matmul (2-D constant B) / conv2d (any groups) whose weight is `dequantize` of an
integer constant (per output channel or per tensor; symmetric, i8 or i4 with zero point 0 or u8 with zero
point 128, or asymmetric: with `weight_bits=8` such a weight keeps its zero point as the op's
`weight_zero_point` when weight minus zero point leaves s8, exactly):

1. activation `dequantize(quantize(x))` (u8/i8, per tensor): the op becomes
   `qlinear / qmatmul / qconv2d(q, x_scale, x_zero_point, w_i8, w_scale, bias)` reading q;
2. `dynamic=true` and an f32 activation: `quantize-dynamic(x)` is inserted (per row, or per tensor
   with `granularity=tensor`; conv2d per tensor) and the op folds as in 1;
3. the folded op's f32 result read only by a per-tensor (or output-channel) `quantize`: that
   quantize folds into the op, which then writes u8/i8 itself (requantization);
4. `quantize(add(dequantize(a), dequantize(b)))`, all per tensor: one `qadd` (exact;
   `quantize_fold_add.py`);
5. an i32 linear / matmul / conv2d of `quantize-dynamic`'s u8 minus its zero point, converted to f32 and
   scaled by x_scale * w_scale (ONNX Runtime's dynamic form as imported): the integer op reading the u8
   (exact; `quantize_fold_integer.py`).

Weights are re-expressed in the range `weight_bits` holds: 8 keeps them ([-128, 127]); 7 (what the
AVX2 and AVX-512BW kernels compute exactly) re-quantizes each channel from its dequantized values,
w7 = rint(w * s / s7) with s7 = max|w * s| / 63, which moves each weight by at most s7 / 2 more.
`weight_bits=auto` is 8 for a target other than this CPU, and for this CPU 8 when it reports
avx512vnni or avxvnni, 7 otherwise. Every matrix op or Q/DQ pair left unfolded is listed with its reason.

A grouped conv2d with more than one input channel per group folds only with `grouped_conv=true`: the Numba
backend runs it exactly, as one int8 GEMM per group between NHWC and NCHW copies, but on small groups that is
slower than the f32 grouped convolution it replaces (ShuffleNet's 4-group 1x1 convolutions of 34-136 channels
per group: the whole model 6.6 ms int8 dynamic against 3.8 ms with them left f32). Depthwise convolutions (one
input channel per group) always fold: their int8 kernel pays.
"""

from __future__ import annotations

from typing import Any, Literal

import llvmlite.binding as llvm
import numpy as np

from ..ir.graph import Graph, Node, Value
from ..ir.ops.registry import get_op
from .base import Pass, PassContext, PassResult, register_pass
from .integer_weights import FOLD_OPS, IntWeight, channel_axis, fit_weight, new_const, shifted_into_s8
from .quantize_fold_add import fold_adds
from .quantize_fold_integer import fold_integer_products

WEIGHT_ZERO_POINT = {"i8": 0, "i4": 0, "u8": 128}
"""Zero point of each symmetric weight storage the quantize pass writes."""
FULL_RANGE_FEATURES = ("avx512vnni", "avxvnni")
"""Host features whose int8 kernels (vpdpbusd on zmm or ymm) compute full-range s8 weights exactly."""
HOST_TARGET = "cpu-host"


def host_weight_bits() -> int:
    """8 when this CPU's int8 kernels take full-range weights, else 7 (vpmaddubsw's exact range)."""
    features = llvm.get_host_cpu_features()
    return 8 if any(features.get(f) for f in FULL_RANGE_FEATURES) else 7


def _producer(v: Value, op: str) -> Node | None:
    p = v.producer
    return p if p is not None and p.op == op else None


def _emit(graph: Graph, anchor: Node, op: str, inputs: list[Value], name: str, **attrs: Any) -> list[Value]:
    """Insert `op(inputs) {attrs}` before `anchor`; returns its outputs (named after `name`)."""
    opdef = get_op(op)
    attrs = opdef.normalize_attrs(attrs)
    types = opdef.infer([v.type for v in inputs], attrs)
    first = graph.fresh_name(name)
    outs = [Value(first if i == 0 else graph.fresh_name(f"{first}.{i}"), t) for i, t in enumerate(types)]
    graph.insert_before(anchor, Node(op, inputs, attrs, outs))
    return outs


def integer_weight(n: Node, bits: int) -> tuple[IntWeight | None, str]:
    """The s8 weight and per-channel scales of `n`'s `dequantize`d weight, or (None, why not)."""
    dq = _producer(n.inputs[1], "dequantize")
    if dq is None or not dq.inputs[0].is_constant:
        return None, "its weight is not dequantize of a constant"
    q = dq.inputs[0]
    name = q.type.dtype.name
    if len(dq.inputs) > 1:
        return None, f"its weight is quantized in groups of {dq.attrs['group_size']} (no integer op has group scales)"
    if name not in WEIGHT_ZERO_POINT:
        return None, f"its weight is stored as {name}"
    axis_c = channel_axis(n.op, q.type.rank)
    a = dq.attrs
    if a["axis"] is not None and a["axis"] % q.type.rank != axis_c:
        return None, f"its weight is quantized along axis {a['axis']}, not the output channels"
    channels = q.type.shape[axis_c]
    scale = np.broadcast_to(np.asarray(a["scale"], np.float32), (channels,)).copy()
    shape = [1] * q.type.rank
    shape[axis_c] = -1
    zp = np.broadcast_to(np.asarray(a["zero_point"], np.int64), (channels,)).reshape(shape)
    w = np.asarray(q.data).astype(np.int64) - zp
    if all(z == WEIGHT_ZERO_POINT[name] for z in a["zero_point"]) or bits != 8 or \
            (w.min(initial=0) >= -128 and w.max(initial=0) <= 127):  # s8 with no zero point (7 bits: re-quantized)
        return fit_weight(w.astype(np.int32), scale, axis_c, bits, q.type.sparsity), ""
    shifted = shifted_into_s8(w, axis_c)  # asymmetric: the weight keeps its zero point
    if isinstance(shifted, str):
        return None, f"its weight's zero point {list(a['zero_point'])[:4]} leaves it wider than int8: {shifted}"
    return IntWeight(shifted[0], scale, 0.0, None, shifted[1]), ""


@register_pass
class QuantizeFold(Pass):
    """Fold dequantize(weight) -> matrix op, with a quantized or dynamically quantized activation, into
    qlinear / qmatmul / qconv2d (see the module doc for the rules)."""

    name = "quantize-fold"
    exact = False
    dynamic: bool = False
    granularity: Literal["row", "tensor"] = "row"
    weight_bits: Literal["auto", "8", "7"] = "auto"
    grouped_conv: bool = False

    def bits(self, ctx: PassContext) -> int:
        """The weight_bits the folded ops hold: the option, or for auto the target's / host's."""
        if self.weight_bits != "auto":
            return int(self.weight_bits)
        target = str(ctx.target) if ctx.target is not None else HOST_TARGET
        return 8 if target != HOST_TARGET else host_weight_bits()

    def _activation(self, graph: Graph, n: Node) -> tuple[list[Value] | None, str]:
        """(q, scale, zero point) for `n`'s activation, or (None, why not)."""
        x = n.inputs[0]
        dq = _producer(x, "dequantize")
        q = _producer(dq.inputs[0], "quantize") if dq is not None else None
        if dq is not None and q is not None:
            a = dq.attrs
            if a["axis"] is not None:
                return None, "its activation is quantized per axis (the integer ops take one scale per tensor or row)"
            return [dq.inputs[0], new_const(graph, np.asarray(a["scale"], np.float32), f"{x.name}.scale"),
                    new_const(graph, np.asarray(a["zero_point"], np.int32), f"{x.name}.zero_point")], ""
        if x.type.dtype.name != "f32":
            return None, f"its activation is {x.type.dtype.name}"
        if not self.dynamic:
            return None, "its activation is f32 (no quantize -> dequantize; quantize-fold{dynamic=true} quantizes it " \
                         "at run time)"
        if x.is_constant:
            return None, "its activation is a constant"
        gran = "tensor" if n.op == "conv2d" else self.granularity
        return _emit(graph, n, "quantize-dynamic", [x], f"{x.name}.qd", granularity=gran), ""

    def _why_not(self, n: Node) -> str | None:
        if n.op == "matmul" and (n.inputs[1].type.rank != 2 or n.inputs[0].type.rank < 2):
            return "it is not a matmul by a 2-D B"
        if (n.op == "conv2d" and n.attrs["groups"] != 1 and n.inputs[1].type.shape[1] != 1
                and not self.grouped_conv):
            return (f"it is a grouped conv2d (groups={n.attrs['groups']}) with more than one input channel per group "
                    "(kept f32, faster here than an int8 GEMM per group; grouped_conv=true folds it)")
        if n.op in ("linear", "conv2d") and len(n.inputs) > 2 and n.inputs[2].type.dtype.name != "f32":
            return "its bias is not f32"
        return None

    def _fold(self, graph: Graph, n: Node, bits: int, dyn: dict[int, list[Value]]) -> tuple[Node | None, str]:
        why = self._why_not(n)
        if why is not None:
            return None, why
        w, why = integer_weight(n, bits)
        if w is None:
            return None, why
        key = id(n.inputs[0])
        act = dyn.get(key) if self.dynamic and _producer(n.inputs[0], "dequantize") is None else None
        if act is None:
            act, why = self._activation(graph, n)
            if act is None:
                return None, why
            src = act[0].producer
            if src is not None and src.op == "quantize-dynamic":
                dyn[key] = act
        wv = new_const(graph, w.data, f"{n.inputs[1].name}.s8")
        wv = Value(wv.name, wv.type.replace(sparsity=w.sparsity), wv.data)
        ws = new_const(graph, w.scale, f"{n.inputs[1].name}.scale")
        bias = [n.inputs[2]] if n.op in ("linear", "conv2d") and len(n.inputs) > 2 else []
        attrs = {k: n.attrs[k] for k in ("strides", "pads", "dilations", "groups")} if n.op == "conv2d" else {}
        opdef = get_op(FOLD_OPS[n.op])
        attrs = opdef.normalize_attrs({**attrs, "weight_bits": bits, "weight_zero_point": w.zero_point})
        inputs = [*act, wv, ws, *bias]
        (t,) = opdef.infer([v.type for v in inputs], attrs)
        if t != n.outputs[0].type:
            return None, f"the integer op would give {t}, not {n.outputs[0].type}"
        folded = Node(FOLD_OPS[n.op], inputs, attrs, [n.outputs[0]], n.meta)
        graph.nodes[graph.nodes.index(n)] = folded
        src = act[0].producer
        folded.meta["quantize_fold"] = {"weight_bits": bits, "extra_weight_error": w.extra_error,
                                        "activation": "dynamic" if src is not None and src.op == "quantize-dynamic"
                                        else "static"}
        return folded, ""

    def _requantize(self, graph: Graph, n: Node) -> bool:
        """Rule 3: the only reader of n's f32 result is a quantize along n's channels or per tensor."""
        users = graph.users().get(id(n.outputs[0]), [])
        if len(users) != 1 or users[0].op != "quantize" or n.outputs[0] in graph.outputs:
            return False
        q = users[0]
        a = q.attrs
        axis_c = 1 if n.op == "qconv2d" else n.outputs[0].type.rank - 1
        if a["axis"] is not None and a["axis"] % n.outputs[0].type.rank != axis_c:
            return False
        opdef = get_op(n.op)
        attrs = opdef.normalize_attrs({**n.attrs, "dtype": q.outputs[0].type.dtype.name,
                                       "out_scale": list(a["scale"]), "out_zero_point": list(a["zero_point"])})
        (t,) = opdef.infer([v.type for v in n.inputs], attrs)
        old = q.outputs[0]
        out = Value(old.name if old in graph.outputs else n.outputs[0].name, t)  # the node keeps its name
        graph.nodes[graph.nodes.index(n)] = Node(n.op, n.inputs, attrs, [out], n.meta)
        graph.nodes.remove(q)
        graph.replace_all_uses(old, out)
        return True

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Fold every eligible matrix op; the report lists every one left and every Q/DQ pair that stays."""
        bits = self.bits(ctx)
        folded: list[str] = []
        kept: list[str] = []
        requant = 0
        dyn: dict[int, list[Value]] = {}
        for n in list(graph.nodes):
            if n.op not in FOLD_OPS:
                continue
            has_q = _producer(n.inputs[1], "dequantize") is not None if len(n.inputs) > 1 else False
            if not has_q and not self.dynamic:
                continue
            new, why = self._fold(graph, n, bits, dyn)
            if new is None:
                if has_q or n.op != "matmul" or n.inputs[1].is_constant:
                    kept.append(f"{n.name} ({n.op}): {why}")
                continue
            folded.append(n.name)
        for n in list(graph.nodes):
            if n.op in FOLD_OPS.values() and self._requantize(graph, n):
                requant += 1
        products, products_kept = fold_integer_products(graph, bits)
        kept += products_kept
        adds, adds_kept = fold_adds(graph)
        kept += adds_kept
        graph.remove_dead_nodes()
        users = graph.users()
        for n in graph.nodes:
            if n.op in ("quantize", "dequantize"):
                readers = sorted({u.op for u in users.get(id(n.outputs[0]), [])}) or ["a graph output"]
                kept.append(f"{n.op} %{n.name}: read by {', '.join(readers)} (no integer op takes it)")
        lines = [f"folded {len(folded)} matrix op(s) into integer ops (weight_bits={bits}"
                 + (f", activations quantized at run time per {self.granularity})" if self.dynamic else ")")
                 + (f"; {requant} requantize their output" if requant else "")]
        if products:
            lines.append(f"folded {len(products)} i32 product(s) of dynamically quantized activations (ONNX Runtime's "
                         f"dynamic form) into integer ops: {', '.join(products)}")
        if adds:
            lines.append(f"folded {len(adds)} add(s) of dequantized tensors into qadd: {', '.join(adds)}")
        if kept:
            lines.append(f"not folded ({len(kept)}):")
            lines += [f"  {k}" for k in kept]
        return PassResult(graph, bool(folded or products or adds), "\n".join(lines))
