"""Rule 4 of quantize-fold: `quantize(add(dequantize(a), dequantize(b)))` as one `qadd` (a residual add in int8).

Applies when both dequantizes and the quantize are per tensor (scales and zero points as attributes), a and b
are u8 / i8 of one shape, and the add's only reader is the quantize. The rewrite is exact: `qadd` is defined
by the same float32 steps (ir/ops/integer.py). The dequantizes stay while something else reads them.
"""

from __future__ import annotations

import numpy as np

from ..ir.dtypes import dtype_from_numpy
from ..ir.graph import Graph, Node, Value
from ..ir.ops.registry import get_op
from ..ir.types import TensorType


def _per_tensor_dequantize(v: Value) -> Node | None:
    """The producer of `v` when it is a per-tensor dequantize of a u8 / i8 tensor."""
    n = v.producer
    if n is None or n.op != "dequantize" or len(n.inputs) != 1 or n.attrs["axis"] is not None:
        return None
    return n if n.inputs[0].type.dtype.name in ("u8", "i8") else None


def _scalar(graph: Graph, data: np.ndarray, name: str) -> Value:
    """A new one-element constant (f32 scale or i32 zero point), named after `name`."""
    arr = np.ascontiguousarray(data.reshape(1))
    return Value(graph.fresh_name(name), TensorType((1,), dtype_from_numpy(arr.dtype)), arr)


def _why_not(graph: Graph, q: Node, users: dict[int, list[Node]]) -> tuple[Node, Node, Node] | str:
    """(add, dequantize a, dequantize b) for a quantize `q` that folds, or why it does not (with its add)."""
    add = q.inputs[0].producer
    if add is None or add.op != "add":
        return ""
    if q.attrs["axis"] is not None:
        return f"add %{add.name} -> quantize %{q.name}: quantized per axis (qadd takes one scale per tensor)"
    dqs = [_per_tensor_dequantize(v) for v in add.inputs]
    if None in dqs:
        return f"add %{add.name}: an operand is not a per-tensor dequantize of u8 / i8"
    da, db = dqs
    if da.inputs[0].type.shape != db.inputs[0].type.shape:  # type: ignore[union-attr]
        return f"add %{add.name}: its operands have different shapes (qadd does not broadcast)"
    if len(users.get(id(add.outputs[0]), [])) != 1 or add.outputs[0] in graph.outputs:
        return f"add %{add.name}: its f32 result has readers besides quantize %{q.name}"
    return add, da, db  # type: ignore[return-value]


def fold_adds(graph: Graph) -> tuple[list[str], list[str]]:
    """Fold every eligible quantize(add(dequantize, dequantize)) into qadd: (folded add names, reasons for the rest)."""
    folded: list[str] = []
    kept: list[str] = []
    users = graph.users()
    for q in [n for n in graph.nodes if n.op == "quantize"]:
        found = _why_not(graph, q, users)
        if isinstance(found, str):
            if found:
                kept.append(found)
            continue
        add, da, db = found
        inputs: list[Value] = []
        for tag, dq in (("a", da), ("b", db)):
            a = dq.attrs
            inputs += [dq.inputs[0], _scalar(graph, np.asarray(a["scale"], np.float32), f"{add.name}.{tag}_scale"),
                       _scalar(graph, np.asarray(a["zero_point"], np.int32), f"{add.name}.{tag}_zero_point")]
        attrs = get_op("qadd").normalize_attrs({"dtype": q.outputs[0].type.dtype.name,
                                                "out_scale": float(q.attrs["scale"][0]),
                                                "out_zero_point": int(q.attrs["zero_point"][0])})
        graph.nodes[graph.nodes.index(q)] = Node("qadd", inputs, attrs, list(q.outputs), add.meta)
        graph.nodes.remove(add)
        folded.append(add.name)
    return folded, kept
