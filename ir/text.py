"""The text form of graphs: a readable, round-trippable printout (see `parser.parse`)."""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

import numpy as np

from .graph import Graph, Node, Value
from .ops import OPS
from .types import QuantInfo, SparsityInfo, TensorType

INLINE_LIMIT = 64
"""Constants with at most this many elements print their values inline."""

PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
"""Value names written bare after % or @; any other name (e.g. ONNX's `gpu_0/data_0`) is quoted."""


def format_float(x: float) -> str:
    """Shortest text that parses back to exactly `x` (inf, -inf and nan included)."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(float(x))


def _format_element(x: Any) -> str:
    """Shortest text for one float element at its own precision (str of a numpy scalar)."""
    f = float(x)
    if math.isnan(f):
        return "-nan" if np.signbit(x) else "nan"  # keeps the sign bit of e.g. 0/0 on x86
    if math.isinf(f):
        return format_float(f)
    text = str(x)
    text = text if type(x)(float(text)) == x else repr(f)
    return text if any(c in text for c in ".en") else text + ".0"  # "-0" would parse as the integer 0


def format_attr_value(v: Any) -> str:
    """An attribute value in text: ints, floats, strings, bools, lists of numbers, nested graphs."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_float(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(format_attr_value(x) for x in v) + "]"
    if isinstance(v, Graph):  # a region body: a nested graph, printed on its own lines
        return print_graph(v).rstrip("\n")
    raise TypeError(f"attribute value {v!r} has no text form")


def _format_quant(q: QuantInfo) -> str:
    parts = [f"scale={format_attr_value(list(q.scale))}",
             f"zero_point={format_attr_value(list(q.zero_point))}", f"bits={q.bits}"]
    if q.axis is not None:
        parts.append(f"axis={q.axis}")
    if q.group_size is not None:
        parts.append(f"group_size={q.group_size}")
    return "<quant " + " ".join(parts) + ">"


def _format_sparsity(s: SparsityInfo) -> str:
    parts = [f"pattern={s.pattern}"]
    if s.block is not None:
        parts.append(f"block={format_attr_value(list(s.block))}")
    if s.n is not None:
        parts += [f"n={s.n}", f"m={s.m}"]
    parts.append(f"density={format_float(s.density)}")
    if s.padded:
        parts.append("padded=true")
    return "<sparse " + " ".join(parts) + ">"


def format_type(t: TensorType) -> str:
    """`f32[1,64]`, followed by `<quant ...>` and `<sparse ...>` when present."""
    s = f"{t.dtype.name}[{','.join(str(d) for d in t.shape)}]"
    if t.quant is not None:
        s += _format_quant(t.quant)
    if t.sparsity is not None:
        s += _format_sparsity(t.sparsity)
    return s


def format_name(name: str) -> str:
    """A value name as written after its sigil: bare when plain, else a JSON string (`"gpu_0/data_0"`)."""
    return name if PLAIN_NAME.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def format_ref(v: Value) -> str:
    """`%name` for a computed value, `@name` for a constant (names that are not plain are quoted)."""
    return ("@" if v.is_constant else "%") + format_name(v.name)


def format_node(n: Node) -> str:
    """One equation: `%y = op(%x, @w) {attr=value} : type`; default attributes are omitted."""
    outs = ", ".join(format_ref(v) for v in n.outputs)
    args = ", ".join(format_ref(v) for v in n.inputs)
    opdef = OPS.get(n.op)
    shown = {}
    for k, v in n.attrs.items():
        spec = opdef.attr_index.get(k) if opdef else None
        if spec is not None and not spec.required and _same_attr(spec.default, v):
            continue
        shown[k] = v
    attrs = ""
    if shown:
        attrs = " {" + ", ".join(f"{k}={format_attr_value(v)}" for k, v in shown.items()) + "}"
    types = ", ".join(format_type(v.type) for v in n.outputs)
    return f"{outs} = {n.op}({args}){attrs} : {types}"


def _same_attr(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def format_constant(v: Value, constants: str = "full") -> str:
    """`const @w: f32[2,2] = [...]` (small), `= blob"<base64>"` (large), or an elided marker."""
    assert v.data is not None
    head = f"const {format_ref(v)}: {format_type(v.type)} = "
    flat = np.asarray(v.data).reshape(-1)
    if flat.size <= INLINE_LIMIT:
        if v.type.dtype.is_float:
            body = ", ".join(_format_element(x) for x in flat)
        else:
            body = ", ".join(str(int(x)) for x in flat)
        return head + "[" + body + "]"
    if constants == "elide":
        return head + f"elided<{v.data.nbytes} bytes>"
    data = np.ascontiguousarray(v.data).astype(v.data.dtype.newbyteorder("<"), copy=False)
    return head + 'blob"' + base64.b64encode(data.tobytes()).decode("ascii") + '"'


def print_graph(g: Graph, constants: str = "full") -> str:
    """The whole graph as text; `constants` is "full" (round-trips) or "elide" (for reading)."""
    if constants not in ("full", "elide"):
        raise ValueError(f"constants must be 'full' or 'elide', got {constants!r}")
    ins = ", ".join(f"{format_ref(v)}: {format_type(v.type)}" for v in g.inputs)
    out_types = [format_type(v.type) for v in g.outputs]
    ret = out_types[0] if len(out_types) == 1 else "(" + ", ".join(out_types) + ")"
    lines = [f"graph {g.name}({ins}) -> {ret} {{"]
    lines += ["  " + line for n in g.nodes for line in format_node(n).split("\n")]
    lines.append("  return " + ", ".join(format_ref(v) for v in g.outputs))
    lines.append("}")
    lines += [format_constant(c, constants) for c in g.constants]
    return "\n".join(lines) + "\n"
