"""Embedding tables in int8: `gather(T, ids)` of a constant f32 table becomes `cast(gather(Q, ids)) * gather(S, ids)`.

Q holds each row of T in int8, symmetric, scale S[r] = max|T[r]| / 127 (a [V, 1] f32 constant), so a gathered
row is dequantized with its own scale. Rows are quantized apart because embedding rows differ in range by
orders of magnitude (a rare token's row is small); one scale per column would flatten them. Stated bound:
every element moves by at most S[r] / 2 (round to nearest; a zero row stays zero). `quantize{ops=...+gather}`
runs it; ONNX Runtime's dynamic quantizer quantizes Gather the same way (one scale per tensor there).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch

import numpy as np

from ..ir.dtypes import f32, i8
from ..ir.graph import Graph, Node, Value
from ..ir.types import TensorType

QMAX = 127


@dataclass(frozen=True)
class QuantizedTable:
    """One table quantized: the gather node's name, its bytes before and after, the largest element error."""

    name: str
    bytes_before: int
    bytes_after: int
    max_error: float


def table_problem(n: Node, min_params: int) -> str | None:
    """Why the gather node `n` keeps its table in f32, or None when it can be quantized."""
    data = n.inputs[0]
    if not data.is_constant:
        return "its table is not a constant"
    if data.type.dtype.name != "f32":
        return f"its table is {data.type.dtype.name}, not f32"
    if len(data.type.shape) != 2 or n.attrs.get("axis", 0) != 0:
        return "not a row lookup (a 2-D table gathered along axis 0)"
    if data.data.size < min_params:  # type: ignore[union-attr]
        return f"fewer than {min_params} parameters"
    if not np.all(np.isfinite(data.data)):  # type: ignore[arg-type]
        return "its table holds NaN or infinity"
    return None


def quantize_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q int8 [V, D], S f32 [V, 1]) with T ~ Q * S, one symmetric scale per row (1 for a zero row)."""
    peak = np.max(np.abs(table), axis=1, keepdims=True).astype(np.float32)
    scale = np.where(peak > 0, peak / np.float32(QMAX), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(table / scale), -QMAX, QMAX).astype(np.int8)
    return q, scale


def _insert(graph: Graph, anchor: Node, op: str, inputs: list[Value], out: Value, **attrs: object) -> Value:
    graph.insert_before(anchor, Node(op, inputs, dict(attrs), [out]))
    return out


def quantize_table(graph: Graph, n: Node) -> QuantizedTable:
    """Rewrite gather node `n` (checked by `table_problem`) in place; its output value is kept."""
    data, ids = n.inputs[0], n.inputs[1]
    table = np.asarray(data.data)
    q, scale = quantize_rows(table)
    out = n.outputs[0]
    rows_shape = out.type.shape[:-1] + (1,)
    qv = Value(graph.fresh_name(f"{data.name}.q"), TensorType(q.shape, i8), q)
    sv = Value(graph.fresh_name(f"{data.name}.scale"), TensorType(scale.shape, f32), scale)
    picked = _insert(graph, n, "gather", [qv, ids], Value(graph.fresh_name(f"{out.name}.q"),
                     TensorType(out.type.shape, i8)), axis=0)
    widened = _insert(graph, n, "cast", [picked], Value(graph.fresh_name(f"{out.name}.int"), out.type), dtype="f32")
    scales = _insert(graph, n, "gather", [sv, ids], Value(graph.fresh_name(f"{out.name}.scale"),
                     TensorType(rows_shape, f32)), axis=0)
    n.op, n.inputs, n.attrs = "mul", [widened, scales], {}
    n.meta["quantize"] = {"precision": "int8", "scheme": "weight", "axis": 0, "table": data.name,
                          "weight_bound": "scale/2 of its row", "scale_min": float(scale.min()),
                          "scale_max": float(scale.max())}
    err = float(np.max(np.abs(q.astype(np.float32) * scale - table))) if table.size else 0.0
    return QuantizedTable(n.name, table.nbytes, q.nbytes + scale.nbytes, err)


def quantize_tables(graph: Graph, min_params: int, skip: list[str]) -> tuple[list[QuantizedTable],
                                                                           list[tuple[str, str]]]:
    """Quantize every eligible constant lookup table of `graph` in place; returns what was done and what was
    skipped (reason, node)."""
    done, skipped = [], []
    for n in list(graph.nodes):
        if n.op != "gather":
            continue
        if any(fnmatch(n.name, p) for p in skip):
            skipped.append(("excluded", f"{n.name} (skip={'+'.join(skip)})"))
            continue
        why = table_problem(n, min_params)
        if why is not None:
            if n.inputs[0].is_constant:
                skipped.append(("table kept f32", f"{n.name} ({why})"))
            continue
        done.append(quantize_table(graph, n))
    return done, skipped

