"""`to_onnx`: write a graph made of ONNX-expressible ops as an ONNX model (opset 13 or newer).

Constants become initializers; value names are kept. `linear` becomes Gemm for 2-D inputs
and MatMul (+ Add) otherwise; `gelu` becomes Gelu from opset 20 and its erf/tanh formula
before; `attention` becomes its standard ops (Reshape, Transpose, MatMul, Mul, Add, Softmax).
A graph with ops ONNX cannot express fails with one error listing all of them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph import Graph, Node, Value
from .onnx_context import IR_TO_ONNX, Namer
from .onnx_export_integer import INTEGER_EXPORTERS, integer_product, narrow_operand
from .ops.attention import attention_scale, causal_mask
from .regions import inline_regions

DEFAULT_OPSET = 17
MIN_EXPORT_OPSET = 13


class OnnxExportError(ValueError):
    """The graph cannot be written as ONNX; the message lists every reason."""


class _Writer:
    """Collects ONNX nodes and initializers for one export."""

    def __init__(self, graph: Graph, opset: int) -> None:
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self.namer = Namer()
        for v in graph.values():
            self.namer.taken.add(v.name)
        self._derived: dict[tuple[str, str], str] = {}

    def const(self, arr: np.ndarray, hint: str) -> str:
        """Add an initializer holding `arr`; returns its name."""
        name = self.namer.fresh(hint)
        self.inits[name] = numpy_helper.from_array(np.asarray(arr), name)
        return name

    def ref(self, v: Value) -> str:
        """The ONNX name of IR value `v` (constants become initializers on first use)."""
        if v.is_constant and v.name not in self.inits:
            assert v.data is not None
            self.inits[v.name] = numpy_helper.from_array(v.data, v.name)
        return v.name

    def derived(self, v: Value, key: str, fn: Callable[[np.ndarray], np.ndarray]) -> str:
        """An initializer computed once from constant `v` (e.g. its transpose)."""
        if (v.name, key) not in self._derived:
            assert v.data is not None
            self._derived[(v.name, key)] = self.const(fn(v.data), f"{v.name}.{key}")
        return self._derived[(v.name, key)]

    def add(self, op_type: str, inputs: list[str], outputs: list[str] | None = None, **attrs: Any) -> str:
        """Append an ONNX node; returns its (first) output name."""
        outs = outputs or [self.namer.fresh(f"{inputs[0]}.{op_type.lower()}")]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **{k: v for k, v in attrs.items() if v is not None}))
        return outs[0]

    def ints(self, values: Any, hint: str) -> str:
        """An int64 initializer."""
        return self.const(np.asarray(list(values), dtype=np.int64), hint)


Exporter = Callable[[_Writer, Node, list[str], str], None]
_SAME = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "maximum": "Max", "minimum": "Min",
         "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "erf": "Erf", "sqrt": "Sqrt", "exp": "Exp",
         "log": "Log", "neg": "Neg", "abs": "Abs", "identity": "Identity", "dropout": "Identity",
         "global-avgpool": "GlobalAveragePool", "equal": "Equal", "less": "Less", "less-equal": "LessOrEqual",
         "greater": "Greater", "greater-equal": "GreaterOrEqual", "logical-and": "And", "logical-or": "Or",
         "logical-xor": "Xor", "logical-not": "Not", "where": "Where", "floor": "Floor", "ceil": "Ceil",
         "round": "Round", "sign": "Sign", "sin": "Sin", "cos": "Cos", "tan": "Tan", "asin": "Asin", "acos": "Acos",
         "atan": "Atan", "sinh": "Sinh", "cosh": "Cosh", "asinh": "Asinh", "acosh": "Acosh", "atanh": "Atanh"}


def _is_int8(v: Value) -> bool:
    if v.type.dtype.name == "i4":
        raise ValueError("products of i4 values have no ONNX operator")
    return v.type.dtype.name in ("i8", "u8")


def _int_bias(w: _Writer, y: str, bias: str, out: str, shape: list[int] | None = None) -> None:
    """out = y (i32) + bias cast to i32 (reshaped to `shape` when given)."""
    b = w.add("Cast", [bias], to=onnx.TensorProto.INT32)
    if shape is not None:
        b = w.add("Reshape", [b, w.ints(shape, f"{out}.bias_shape")])
    w.add("Add", [y, b], [out])


def _int_out(w: _Writer, acc: str, ins: list[str], out: str, shape: list[int] | None = None) -> None:
    """out = acc, plus the bias (ins[2]) when the node has one."""
    if len(ins) == 3:
        _int_bias(w, acc, ins[2], out, shape)
    else:
        w.add("Identity", [acc], [out])


def _linear(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    x, weight = n.inputs[0], n.inputs[1]
    if _is_int8(x):  # 8-bit products accumulate in i32: MatMulInteger
        wt = w.derived(weight, "T", lambda a: a.T) if weight.is_constant else w.add("Transpose", [ins[1]], perm=[1, 0])
        if len(ins) == 3:
            _int_bias(w, w.add("MatMulInteger", [ins[0], wt]), ins[2], out)
        else:
            w.add("MatMulInteger", [ins[0], wt], [out])
        return
    if x.type.dtype.name == "i32":  # 8-bit operands widened (as MatMulInteger imports): MatMulInteger again
        acc = integer_product(w, "MatMulInteger", x, np.asarray(weight.data).T, out) if weight.is_constant else None
        if acc is not None:
            _int_out(w, acc, ins, out)
            return
    if x.type.rank == 2 and x.type.dtype.is_float:
        w.add("Gemm", [ins[0], ins[1]] + ins[2:], [out], transB=1)
        return
    if weight.is_constant:
        wt = w.derived(weight, "T", lambda a: a.T)
    else:
        wt = w.add("Transpose", [ins[1]], perm=[1, 0])
    if len(ins) == 3:
        w.add("Add", [w.add("MatMul", [ins[0], wt]), ins[2]], [out])
    else:
        w.add("MatMul", [ins[0], wt], [out])


def _window(n: Node) -> dict[str, Any]:
    a = n.attrs
    return {"strides": list(a["strides"]), "pads": list(a["pads"]), "dilations": list(a["dilations"])}


def _conv2d(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    attrs = dict(kernel_shape=list(n.inputs[1].type.shape[2:]), group=n.attrs["groups"], **_window(n))
    if n.inputs[0].type.dtype.name == "i32":  # 8-bit operands widened (as ConvInteger imports): ConvInteger again
        x8 = narrow_operand(w, n.inputs[0], f"{out}.x")
        w8 = narrow_operand(w, n.inputs[1], f"{out}.w")
        if x8 is None or w8 is None or w8[1]:
            raise ValueError("a conv2d of i32 operands has an ONNX form only as ConvInteger of 8-bit tensors "
                             "widened (cast, minus one zero point)")
        acc = w.add("ConvInteger", [x8[0], w8[0], x8[1]] if x8[1] else [x8[0], w8[0]], **attrs)
        _int_out(w, acc, ins, out, [1, -1, 1, 1])
    elif not _is_int8(n.inputs[0]):
        w.add("Conv", ins, [out], **attrs)
    elif len(ins) == 3:  # 8-bit: ConvInteger (i32 out), the bias added after
        _int_bias(w, w.add("ConvInteger", ins[:2], **attrs), ins[2], out, [1, -1, 1, 1])
    else:
        w.add("ConvInteger", ins, [out], **attrs)


def _matmul(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    w.add("MatMulInteger" if _is_int8(n.inputs[0]) else "MatMul", ins, [out])


def _pool(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    a = n.attrs
    attrs = _window(n)
    attrs.update(kernel_shape=list(a["kernel"]), ceil_mode=int(a["ceil_mode"]))
    if n.op == "avgpool2d":
        attrs["count_include_pad"] = int(a["count_include_pad"])
        if tuple(a["dilations"]) == (1, 1):
            del attrs["dilations"]
        elif w.opset < 19:
            raise ValueError("avgpool2d with dilations needs opset 19")
    w.add("MaxPool" if n.op == "maxpool2d" else "AveragePool", ins, [out], **attrs)


def _arg_extreme(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    a = n.attrs
    w.add("ArgMax" if n.op == "argmax" else "ArgMin", ins, [out], axis=a["axis"], keepdims=int(a["keepdims"]),
          select_last_index=int(a["select_last_index"]) if a["select_last_index"] else None)


def _topk(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    a = n.attrs
    w.add("TopK", [ins[0], w.const(np.array([a["k"]], np.int64), f"{out}.k")], [v.name for v in n.outputs],
          axis=a["axis"], largest=None if a["largest"] else 0)


def _cumsum(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    a = n.attrs
    w.add("CumSum", [ins[0], w.const(np.array(a["axis"], np.int64), f"{out}.axis")], [out],
          exclusive=int(a["exclusive"]) or None, reverse=int(a["reverse"]) or None)


def _reduce(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    op = {"reduce-sum": "ReduceSum", "reduce-mean": "ReduceMean", "reduce-max": "ReduceMax"}[n.op]
    axes = list(n.attrs["axes"])
    keep = int(n.attrs["keepdims"])
    if not axes:
        w.add(op, ins, [out], keepdims=keep)
    elif op == "ReduceSum" or w.opset >= 18:
        w.add(op, [ins[0], w.ints(axes, f"{out}.axes")], [out], keepdims=keep)
    else:
        w.add(op, ins, [out], axes=axes, keepdims=keep)


def _layernorm(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    if w.opset < 17:
        raise ValueError("layernorm needs opset 17 (LayerNormalization)")
    x = n.inputs[0]
    axis = n.attrs["axis"] % x.type.rank
    if len(ins) == 1:
        ins = ins + [w.const(np.ones(x.type.shape[axis:], x.type.dtype.np_dtype), f"{out}.scale")]
    w.add("LayerNormalization", ins, [out], axis=axis, epsilon=n.attrs["epsilon"])


def _gelu(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    approx = n.attrs["approximate"]
    if w.opset >= 20:
        w.add("Gelu", ins, [out], approximate=approx)
        return
    dt = n.inputs[0].type.dtype.np_dtype
    x = ins[0]

    def c(v: float, hint: str) -> str:
        """A scalar constant in x's dtype."""
        return w.const(np.asarray(v, dt), f"{out}.{hint}")

    if approx == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = w.add("Mul", [w.add("Mul", [x, x]), x])
        inner = w.add("Add", [x, w.add("Mul", [cube, c(0.044715, "k")])])
        inner = w.add("Mul", [inner, c(math.sqrt(2 / math.pi), "s")])
        t = w.add("Tanh", [inner])
    else:  # 0.5 x (1 + erf(x / sqrt(2)))
        t = w.add("Erf", [w.add("Div", [x, c(math.sqrt(2.0), "sqrt2")])])
    w.add("Mul", [w.add("Mul", [x, c(0.5, "half")]), w.add("Add", [t, c(1.0, "one")])], [out])


def _clip(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    dt = n.inputs[0].type.dtype.np_dtype
    lo, hi = n.attrs["min"], n.attrs["max"]
    if dt.kind in "iu":
        info = np.iinfo(dt)
        lo = None if lo == -math.inf else int(np.clip(math.ceil(lo), info.min, info.max))
        hi = None if hi == math.inf else int(np.clip(math.floor(hi), info.min, info.max))
    else:
        lo = None if lo == -math.inf else lo
        hi = None if hi == math.inf else hi
    args = [ins[0], "" if lo is None else w.const(np.asarray(lo, dt), f"{out}.min"),
            "" if hi is None else w.const(np.asarray(hi, dt), f"{out}.max")]
    while args[-1] == "":
        args.pop()
    w.add("Clip", args, [out])


def _slice(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    shape = n.inputs[0].type.shape
    starts, ends, axes, steps = [], [], [], []
    for st, en, ax, sp in zip(*(n.attrs[k] for k in ("starts", "ends", "axes", "steps"))):
        ax = ax % len(shape)
        r = range(*slice(st, en, sp).indices(shape[ax]))  # numpy's bounds, made explicit for ONNX
        if len(r) == 0:
            s, e = 0, 0
        else:
            s, e = r.start, r[-1] + (1 if sp > 0 else -1)
            if e < 0:
                e = -shape[ax] - 1  # "before index 0" for a negative step
        starts.append(s)
        ends.append(e)
        axes.append(ax)
        steps.append(1 if len(r) == 0 else sp)
    w.add("Slice", [ins[0], w.ints(starts, f"{out}.starts"), w.ints(ends, f"{out}.ends"), w.ints(axes, f"{out}.axes"),
                    w.ints(steps, f"{out}.steps")], [out])


def _reshape(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    shape = list(n.attrs["shape"])
    allowzero = 1 if 0 in shape else None
    if allowzero and w.opset < 14:
        raise ValueError("reshape to a shape with a 0 dimension needs opset 14 (allowzero)")
    w.add("Reshape", [ins[0], w.ints(shape, f"{out}.shape")], [out], allowzero=allowzero)


def _attention(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    """Standard ops: split heads (Reshape + Transpose), MatMul, Mul by the scale, Add the mask (and the causal
    mask as a constant), Softmax, MatMul, merge heads."""
    b, sq, e = n.inputs[0].type.shape
    skv, heads = n.inputs[1].type.shape[1], n.attrs["heads"]
    d = e // heads

    def heads_of(x: str, s: int, perm: list[int], hint: str) -> str:
        split = w.add("Reshape", [x, w.ints([b, s, heads, d], f"{out}.{hint}_shape")])
        return w.add("Transpose", [split], perm=perm)

    qh = heads_of(ins[0], sq, [0, 2, 1, 3], "q")
    kt = heads_of(ins[1], skv, [0, 2, 3, 1], "k")
    vh = heads_of(ins[2], skv, [0, 2, 1, 3], "v")
    scale = w.const(np.asarray(attention_scale(n.attrs["scale"], e, heads), np.float32), f"{out}.scale")
    scores = w.add("Mul", [w.add("MatMul", [qh, kt]), scale])
    if len(ins) == 4:
        scores = w.add("Add", [scores, ins[3]])
    if n.attrs["causal"]:
        scores = w.add("Add", [scores, w.const(causal_mask(sq, skv), f"{out}.causal_mask")])
    merged = w.add("Transpose", [w.add("MatMul", [w.add("Softmax", [scores], axis=-1), vh])], perm=[0, 2, 1, 3])
    w.add("Reshape", [merged, w.ints([b, sq, e], f"{out}.shape")], [out])


def _qparams(w: _Writer, n: Node, out: str, zp_dtype: np.dtype) -> tuple[list[str], int | None]:
    a = n.attrs
    per_axis = a["axis"] is not None
    scale = np.asarray(a["scale"], np.float32)
    zp = np.asarray(a["zero_point"]).astype(zp_dtype)
    if not per_axis:
        scale, zp = scale.reshape(()), zp.reshape(())
    return [w.const(scale, f"{out}.scale"), w.const(zp, f"{out}.zero_point")], a["axis"] if per_axis else None


def _quantize(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    params, axis = _qparams(w, n, out, n.outputs[0].type.dtype.np_dtype)
    w.add("QuantizeLinear", [ins[0]] + params, [out], axis=axis)


def _dequantize(w: _Writer, n: Node, ins: list[str], out: str) -> None:
    dt = n.inputs[0].type.dtype
    if dt.name == "i4" and w.opset < 21:
        raise ValueError("dequantize of i4 needs opset 21")
    if len(n.inputs) > 1:  # grouped: ONNX's blocked dequantization, the scale a tensor input
        if w.opset < 21:
            raise ValueError(f"dequantize %{n.outputs[0].name} in groups of {n.attrs['group_size']} needs opset 21 "
                             "(DequantizeLinear's block_size)")
        w.add("DequantizeLinear", ins[:2], [out], axis=n.attrs["axis"], block_size=n.attrs["group_size"])
        return
    params, axis = _qparams(w, n, out, dt.np_dtype)
    w.add("DequantizeLinear", [ins[0]] + params, [out], axis=axis)


def _same(op_type: str) -> Exporter:
    """The exporter of an op that maps to one ONNX node with the same inputs and no attributes."""

    def export(w: _Writer, n: Node, ins: list[str], out: str) -> None:
        """Write the one node."""
        w.add(op_type, ins, [out])

    return export


EXPORTERS: dict[str, Exporter] = {
    "linear": _linear,
    "matmul": _matmul,
    "attention": _attention,
    "conv2d": _conv2d,
    "maxpool2d": _pool,
    "avgpool2d": _pool,
    "reduce-sum": _reduce,
    "reduce-mean": _reduce,
    "reduce-max": _reduce,
    "argmax": _arg_extreme,
    "mod": lambda w, n, ins, out: w.add("Mod", ins, [out], fmod=int(n.attrs["fmod"]) or None),
    "gather-elements": lambda w, n, ins, out: w.add("GatherElements", ins, [out], axis=n.attrs["axis"]),
    "gather-nd": lambda w, n, ins, out: w.add("GatherND", ins, [out], batch_dims=n.attrs["batch_dims"] or None),
    "scatter-nd": lambda w, n, ins, out: w.add(
        "ScatterND", ins, [out], reduction=None if n.attrs["reduction"] == "none" else n.attrs["reduction"]),
    "scatter-elements": lambda w, n, ins, out: w.add(
        "ScatterElements", ins, [out], axis=n.attrs["axis"],
        reduction=None if n.attrs["reduction"] == "none" else n.attrs["reduction"]),
    "cumsum": _cumsum,
    "topk": _topk,
    "argmin": _arg_extreme,
    "layernorm": _layernorm,
    "gelu": _gelu,
    "clip": _clip,
    "slice": _slice,
    "reshape": _reshape,
    "quantize": _quantize,
    "dequantize": _dequantize,
    "batchnorm": lambda w, n, ins, out: w.add("BatchNormalization", ins, [out], epsilon=n.attrs["epsilon"]),
    "softmax": lambda w, n, ins, out: w.add("Softmax", ins, [out], axis=n.attrs["axis"]),
    "lrn": lambda w, n, ins, out: w.add("LRN", ins, [out], **n.attrs),
    "cast": lambda w, n, ins, out: w.add("Cast", ins, [out], to=IR_TO_ONNX[n.attrs["dtype"]]),
    "transpose": lambda w, n, ins, out: w.add("Transpose", ins, [out], perm=list(n.attrs["perm"])),
    "flatten": lambda w, n, ins, out: w.add("Flatten", ins, [out], axis=n.attrs["axis"]),
    "concat": lambda w, n, ins, out: w.add("Concat", ins, [out], axis=n.attrs["axis"]),
    "gather": lambda w, n, ins, out: w.add("Gather", ins, [out], axis=n.attrs["axis"]),
    **{op: _same(t) for op, t in _SAME.items()},
    **INTEGER_EXPORTERS,
}
"""IR op -> writer of the equivalent ONNX nodes."""


def _value_info(v: Value) -> onnx.ValueInfoProto:
    if v.type.dtype.name not in IR_TO_ONNX:
        raise OnnxExportError(f"value %{v.name}: dtype {v.type.dtype.name} has no ONNX element type")
    return helper.make_tensor_value_info(v.name, IR_TO_ONNX[v.type.dtype.name], list(v.type.shape))


def to_onnx(graph: Graph, opset: int = DEFAULT_OPSET, path: str | os.PathLike | None = None) -> onnx.ModelProto:
    """The ONNX model of `graph` (checked by onnx.checker; fused regions inlined); saved to `path` when given."""
    if opset < MIN_EXPORT_OPSET:
        raise OnnxExportError(f"export needs opset {MIN_EXPORT_OPSET} or newer, got {opset}")
    if any(n.op == "fused" for n in graph.nodes):  # ONNX has no regions: export their equations
        graph = graph.copy()
        inline_regions(graph)
    early = [n.name for n in graph.nodes if n.op in ("exit", "exit_select")]
    if early:
        raise OnnxExportError(f"graph {graph.name}: early exits (%{', %'.join(early[:5])}) have no ONNX form (ONNX "
                              "cannot stop part of a batch); export the graph without its exits")
    missing = sorted({n.op for n in graph.nodes if n.op not in EXPORTERS})
    if missing:
        where = {op: [n.name for n in graph.nodes if n.op == op][:5] for op in missing}
        raise OnnxExportError(f"graph {graph.name}: ops with no ONNX form: "
                              + "; ".join(f"{op} (e.g. %{', %'.join(names)})" for op, names in where.items()))
    w = _Writer(graph, opset)
    problems = []
    for n in graph.nodes:
        ins = [w.ref(v) for v in n.inputs]
        try:
            EXPORTERS[n.op](w, n, ins, n.outputs[0].name)
        except (ValueError, KeyError) as e:
            problems.append(f"node %{n.name} ({n.op}): {e}")
    if problems:
        raise OnnxExportError(f"graph {graph.name}: cannot export:\n  " + "\n  ".join(problems))
    input_names = {v.name for v in graph.inputs}
    outputs = []
    for v in graph.outputs:
        if v.is_constant or v.name in input_names or any(o.name == v.name for o in outputs):
            name = w.namer.fresh(f"{v.name}_out")  # ONNX outputs must be produced by a node
            w.add("Identity", [w.ref(v)], [name])
            outputs.append(Value(name, v.type))
        else:
            outputs.append(v)
    g = helper.make_graph(w.nodes, graph.name, [_value_info(v) for v in graph.inputs],
                          [_value_info(v) for v in outputs], initializer=list(w.inits.values()))
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(g, opset_imports=opsets, producer_name="tensorsmith",
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model
