"""Which values carry the batch, and running a node on fewer rows of it (what early exits need).

A value carries the batch when it depends on a graph input whose leading axis is B (the rows of the exits'
heads). Its leading axis then holds m entries per batch row, row b's in [b*m, (b+1)*m) (m = 1 for [B, ...];
a reshape [B, S, E] -> [B*S, E] gives m = S). `ROW_RULES` says per op whether a node keeps rows apart
(row b of each output depends only on row b of the inputs) and with which m; only such nodes may run after
an exit on the rows left, and only such values may be compacted there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .graph import Graph, Node, Value
from .ops import OPS
from .types import TensorType

RowRule = Callable[[Node, list[int | None], int], int | str]
"""rule(node, m of each input (None: not batch-carrying), B) -> m of the outputs, or why the rows mix."""


class RowError(ValueError):
    """A node of an early-exit graph cannot run on part of the batch; the message names node, op and reason."""


def _lead(v: Value, batch: int) -> int | None:
    """m of `v` if its leading axis is a whole number of entries per batch row, else None."""
    s = v.type.shape
    return s[0] // batch if s and s[0] % batch == 0 and s[0] > 0 else None


def _out_m(node: Node, batch: int) -> int | str:
    ms = {_lead(v, batch) for v in node.outputs}
    if None in ms or len(ms) != 1:
        return f"its output {node.outputs[0].type} has no whole number of leading entries per batch row"
    return ms.pop()  # type: ignore[return-value]


def _rank_aligned(node: Node, ms: list[int | None], batch: int) -> int | str:
    """Broadcasting ops: batch inputs span the output's axis 0; other inputs have extent 1 there (or lower rank)."""
    rank = node.outputs[0].type.rank
    for v, m in zip(node.inputs, ms):
        if m is None:
            if v.type.rank == rank and v.type.shape[0] != 1:
                return f"%{v.name} {v.type} does not carry the batch but spans axis 0"
        elif v.type.rank != rank or v.type.shape[0] != node.outputs[0].type.shape[0]:
            return f"%{v.name} {v.type} is broadcast along the batch axis"
    return _out_m(node, batch)


def _first_only(node: Node, ms: list[int | None], batch: int) -> int | str:
    """Ops whose first input carries the rows and whose other inputs are parameters (weights, scales)."""
    x = node.inputs[0]
    if ms[0] is None or x.type.rank < 2:
        return f"its rows would come from %{x.name} {x.type}, which is not [B, ...]"
    first_param = 3 if node.op in _QOPS else 1  # integer ops: per-row activation scales follow the rows
    for v, m in zip(node.inputs[first_param:], ms[first_param:]):
        if m is not None:
            return f"parameter %{v.name} depends on the batch"
    return _out_m(node, batch)


def _all_rows(node: Node, ms: list[int | None], batch: int) -> int | str:
    """Ops all of whose inputs are per-row values of the same shape (an exit's heads)."""
    if None in ms:
        return "an input does not carry the batch"
    return _out_m(node, batch)


def _axis_not_0(key: str) -> RowRule:
    def rule(node: Node, ms: list[int | None], batch: int) -> int | str:
        axis = node.attrs.get(key)
        if axis is not None and axis % max(node.inputs[0].type.rank, 1) == 0:
            return f"{key} {axis} is the batch axis"
        return _rank_aligned(node, ms, batch)

    return rule


def _reduce(node: Node, ms: list[int | None], batch: int) -> int | str:
    rank = node.inputs[0].type.rank
    axes = {a % rank for a in node.attrs["axes"]} if node.attrs["axes"] else set(range(rank))
    return "it reduces over the batch axis" if 0 in axes else _out_m(node, batch)


def _transpose(node: Node, ms: list[int | None], batch: int) -> int | str:
    return "it moves the batch axis" if node.attrs["perm"][0] != 0 else _out_m(node, batch)


def _slice(node: Node, ms: list[int | None], batch: int) -> int | str:
    rank = node.inputs[0].type.rank
    return "it slices the batch axis" if any(a % rank == 0 for a in node.attrs["axes"]) else _out_m(node, batch)


def _concat(node: Node, ms: list[int | None], batch: int) -> int | str:
    if node.attrs["axis"] % node.outputs[0].type.rank == 0:
        return "it joins along the batch axis"
    if None in ms:
        return "it joins a batch-carrying value with one that is not"
    return _out_m(node, batch)


def _gather(node: Node, ms: list[int | None], batch: int) -> int | str:
    (md, mi), axis = ms, node.attrs["axis"] % node.inputs[0].type.rank
    if md is not None and mi is None and axis != 0:
        return _out_m(node, batch)
    if md is None and mi is not None and axis == 0:
        return _out_m(node, batch)
    return "it gathers across batch rows"


def _quantize_dynamic(node: Node, ms: list[int | None], batch: int) -> int | str:
    if node.attrs["granularity"] != "row":
        return "per-tensor dynamic quantization takes one scale over all rows"
    return _out_m(node, batch)


def _attention(node: Node, ms: list[int | None], batch: int) -> int | str:
    """q, k, v [B, S, E] carry the batch; an additive mask [B or 1, ..., S] follows q's rows or broadcasts."""
    if None in ms[:3]:
        return "q, k and v must all carry the batch"
    if len(node.inputs) == 4:
        mask, rows = node.inputs[3], node.inputs[0].type.shape[0]
        lead = mask.type.shape[0] if mask.type.rank == 4 else 1
        if (ms[3] is not None and lead != rows) or (ms[3] is None and lead != 1):
            return f"mask %{mask.name} {mask.type} is broadcast along the batch axis"
    return _out_m(node, batch)


def _row_preserving(node: Node, ms: list[int | None], batch: int) -> int | str:
    return _out_m(node, batch)


_QOPS = ("qlinear", "qmatmul", "qconv2d")

ROW_RULES: dict[str, RowRule] = {
    **{op: _rank_aligned for op, d in OPS.items() if d.elementwise},
    "linear": _first_only,
    "matmul": _rank_aligned,
    "conv2d": _first_only,
    "maxpool2d": _first_only,
    "avgpool2d": _first_only,
    "global-avgpool": _first_only,
    "batchnorm": _first_only,
    "lrn": _first_only,
    "layernorm": _axis_not_0("axis"),
    "softmax": _axis_not_0("axis"),
    "reduce-sum": _reduce,
    "reduce-mean": _reduce,
    "reduce-max": _reduce,
    "transpose": _transpose,
    "reshape": _row_preserving,  # C order: row b is one contiguous chunk before and after
    "flatten": _row_preserving,
    "slice": _slice,
    "concat": _concat,
    "gather": _gather,
    "attention": _attention,
    "quantize-dynamic": _quantize_dynamic,
    "qlinear": _first_only,
    "qmatmul": _first_only,
    "qconv2d": _first_only,
    "qadd": _rank_aligned,
    "quantize": _axis_not_0("axis"),
    "dequantize": _axis_not_0("axis"),
    "exit": _all_rows,
}
"""op -> RowRule. An op missing here (or a rule returning a reason) cannot run on part of the batch."""


def _matmul_rule(node: Node, ms: list[int | None], batch: int) -> int | str:
    a, b = node.inputs
    if ms[1] is not None and (ms[0] is None or a.type.rank < 3 or b.type.rank < 3):
        return f"%{b.name} carries the batch as a matrix operand"
    if ms[0] is not None and a.type.rank < 2:
        return f"%{a.name} {a.type} carries the batch as a vector"
    if ms[1] is None and b.type.rank >= a.type.rank and b.type.rank > 2 and b.type.shape[0] != 1:
        return f"%{b.name} {b.type} is broadcast along the batch axis"
    return _out_m(node, batch)


ROW_RULES["matmul"] = _matmul_rule


def node_rows(node: Node, ms: list[int | None], batch: int) -> int | str:
    """m of the node's outputs when it keeps batch rows apart, else the reason it does not."""
    if node.op == "fused":
        body = node.attrs["body"]
        inner = batch_rows(body, batch, {id(p): m for p, m in zip(body.inputs, ms) if m is not None})
        bad = next(((n, why) for n, why in inner.reasons.items()), None)
        if bad is not None:
            return f"its body's %{bad[0]}: {bad[1]}"
        return inner.rows.get(id(body.outputs[0]), _out_m(node, batch))  # type: ignore[return-value]
    rule = ROW_RULES.get(node.op)
    if rule is None:
        return f"{node.op} has no rule saying it keeps batch rows apart"
    return rule(node, ms, batch)


class BatchRows:
    """Result of `batch_rows`: m per batch-carrying value (by id) and, per node name, why it mixes rows.

    `mixed` holds the ids of values that depend on the batch but whose leading axis is not a block per row.
    """

    def __init__(self) -> None:
        self.rows: dict[int, int] = {}
        self.mixed: set[int] = set()
        self.reasons: dict[str, str] = {}

    def carries(self, v: Value) -> bool:
        """True when `v` depends on the batch."""
        return id(v) in self.rows or id(v) in self.mixed


def batch_rows(graph: Graph, batch: int, seeds: dict[int, int] | None = None) -> BatchRows:
    """Which values of `graph` carry the batch (graph inputs with leading axis `batch`, or `seeds`), with their m."""
    out = BatchRows()
    out.rows = dict(seeds) if seeds is not None else {id(v): 1 for v in graph.inputs if _lead(v, batch) == 1}
    for n in graph.nodes:
        ms = [out.rows.get(id(v)) for v in n.inputs]
        mixed = next((v for v in n.inputs if id(v) in out.mixed), None)
        if mixed is None and all(m is None for m in ms):
            continue
        got = node_rows(n, ms, batch) if mixed is None else f"it reads %{mixed.name}, whose rows are mixed"
        if isinstance(got, str):
            out.reasons[n.name] = got
        for v in n.outputs:
            m = got if isinstance(got, int) else _lead(v, batch)
            if m is None or mixed is not None:
                out.mixed.add(id(v))
            else:
                out.rows[id(v)] = m
    return out


def resize_type(t: TensorType, m: int, rows: int) -> TensorType:
    """`t` with its leading axis holding `rows` batch rows of m entries."""
    return replace(t, shape=(rows * m,) + t.shape[1:])


def _resized_attrs(node: Node, ms: dict[int, int], rows: int, batch: int) -> dict:
    attrs = dict(node.attrs)
    if node.op == "reshape" and id(node.outputs[0]) in ms:
        attrs["shape"] = (rows * ms[id(node.outputs[0])],) + tuple(attrs["shape"][1:])
    elif node.op == "fused":
        body = attrs["body"]
        seeds = {id(p): ms[id(a)] for p, a in zip(body.inputs, node.inputs) if id(a) in ms}
        attrs["body"] = resize_graph(body, seeds, rows, batch)
    return attrs


def _resized_value(v: Value, ms: dict[int, int], rows: int) -> Value:
    return Value(v.name, resize_type(v.type, ms[id(v)], rows) if id(v) in ms else v.type)


def resize_node(node: Node, ms: dict[int, int], rows: int, batch: int) -> Node:
    """A copy of `node` for `rows` batch rows: output types (and reshape targets, region bodies) resized.

    `ms` is `BatchRows.rows` of the graph. The copy reads the same input values (their types are not read
    when a node runs); it is for running only, never added to a graph.
    """
    outs = [_resized_value(v, ms, rows) for v in node.outputs]
    return Node(node.op, node.inputs, _resized_attrs(node, ms, rows, batch), outs, node.meta)


def resize_graph(body: Graph, seeds: dict[int, int], rows: int, batch: int) -> Graph:
    """A region body for `rows` batch rows (its batch-carrying parameters given by `seeds`, id -> m)."""
    ms = batch_rows(body, batch, seeds).rows
    return subgraph(body.name, body.inputs, body.nodes, body.outputs, ms, rows, batch)


def subgraph(name: str, inputs: list[Value], nodes: list[Node], outputs: list[Value], ms: dict[int, int],
             rows: int, batch: int) -> Graph:
    """A new graph of copies of `nodes` reading `inputs` and returning `outputs`, resized for `rows` batch rows.

    `ms` gives m of every batch-carrying value (by id of the original). The originals are not modified.
    """
    mapping: dict[int, Value] = {id(p): _resized_value(p, ms, rows) for p in inputs}

    def val(v: Value) -> Value:
        return v if v.is_constant else mapping[id(v)]

    copies = []
    for n in nodes:
        outs = [_resized_value(v, ms, rows) for v in n.outputs]
        copies.append(Node(n.op, [val(v) for v in n.inputs], _resized_attrs(n, ms, rows, batch), outs, n.meta))
        mapping.update((id(old), new) for old, new in zip(n.outputs, outs))
    return Graph(name, [val(p) for p in inputs], [val(v) for v in outputs], copies)
