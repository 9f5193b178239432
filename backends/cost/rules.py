"""COST_RULES: per-op work (multiply-accumulates, vector ops, GEMM shape, tensors read) from a node's types.

A rule looks only at the IR: shapes, dtypes, attributes. What the work costs on a target (precision,
sparsity, bytes per memory level, time, energy) is decided in model.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ...ir.graph import Node, Value
from ...ir.ops.attention import attended_scores


class CostError(ValueError):
    """A node cannot be priced (no rule for its op, or a target cannot run it); names node and op."""


@dataclass(frozen=True)
class Operand:
    """A tensor a node reads: the value, its role and how many of its elements are read."""

    value: Value
    role: str  # "input" | "weight" | "bias" | "index" | "param"
    elements: int


@dataclass
class Work:
    """What a node computes, independent of hardware."""

    kind: str  # "matrix" | "vector" | "copy" | "convert" | "view"
    macs: int = 0  # dense multiply-accumulates
    ops: int = 0  # other arithmetic (vector unit), one per add/compare/exp step
    gemm: tuple[int, int, int, int] | None = None  # (batch, M, N, K) as the matrix unit sees it
    operands: list[Operand] = field(default_factory=list)
    out_elements: int = 0
    weight: Value | None = None  # the operand whose sparsity / quantization the hardware may exploit


def _numel(v: Value) -> int:
    return math.prod(v.type.shape)


def _reads(node: Node, roles: tuple[str, ...] = ()) -> list[Operand]:
    out = []
    for i, v in enumerate(node.inputs):
        role = roles[i] if i < len(roles) else "input"
        out.append(Operand(v, "weight" if role == "input" and v.is_constant else role, _numel(v)))
    return out


def _out(node: Node) -> int:
    return sum(_numel(v) for v in node.outputs)


def _requant_ops(node: Node, n_out: int) -> int:
    """A matrix op whose output is a narrow integer requantizes each int32 accumulator (scale, round, clip).

    The IR's 8-bit GEMMs return i32 accumulators, so their requantization is priced where it happens:
    in the quantize / dequantize / cast node that follows.
    """
    return 3 * n_out if node.outputs[0].type.dtype.name in ("i8", "u8", "i4") else 0


def linear_rule(node: Node) -> Work:
    """linear(x[..., K], w[N, K], b?): one GEMM with M = prod(leading axes)."""
    x, w = node.inputs[0], node.inputs[1]
    k, n = x.type.shape[-1], w.type.shape[0]
    m = math.prod(x.type.shape[:-1])
    ops = m * n if len(node.inputs) > 2 else 0
    return Work("matrix", macs=m * n * k, ops=ops + _requant_ops(node, m * n), gemm=(1, m, n, k),
                operands=_reads(node, ("input", "weight", "bias")), out_elements=m * n, weight=w)


def matmul_rule(node: Node) -> Work:
    """matmul(a, b): batched GEMM over the broadcast leading axes."""
    a, b = node.inputs
    xs = (1,) + a.type.shape if a.type.rank == 1 else a.type.shape
    ys = b.type.shape + (1,) if b.type.rank == 1 else b.type.shape
    m, k, n = xs[-2], xs[-1], ys[-1]
    batch = max(1, _out(node) // max(1, m * n))
    weight = b if b.is_constant else (a if a.is_constant else None)
    return Work("matrix", macs=batch * m * n * k, ops=_requant_ops(node, _out(node)), gemm=(batch, m, n, k),
                operands=_reads(node), out_elements=_out(node), weight=weight)


def attention_rule(node: Node) -> Work:
    """attention: two batched GEMMs of B*heads matrices (scores Sq x Skv x D, then probabilities @ v, Sq x D x Skv)
    priced as 2*B*heads products of (Sq, Skv, D), plus softmax, scale and mask on the scores as vector work;
    `causal` attention computes only the scores of keys up to each query (about half of them).

    Reads q, k, v (and the mask) and writes only the output: the score matrix stays on chip, tile by
    tile (FlashAttention), so it never counts as memory traffic.
    """
    q, k = node.inputs[0], node.inputs[1]
    b, sq, e = q.type.shape
    heads, skv = node.attrs["heads"], k.type.shape[1]
    d = e // heads
    scores = b * heads * attended_scores(sq, skv, node.attrs["causal"])
    ops = 12 * scores + (2 if len(node.inputs) > 3 else 1) * scores + _out(node)  # softmax, scale (+ mask), divide
    keys = scores // max(b * heads * sq, 1) if node.attrs["causal"] else skv  # mean keys per query: the GEMMs' shape
    return Work("matrix", macs=2 * scores * d, ops=ops, gemm=(2 * b * heads, sq, keys, d),
                operands=_reads(node), out_elements=_out(node))


def conv2d_rule(node: Node) -> Work:
    """conv2d as an implicit GEMM per group: M = N*Ho*Wo, N = C_out/g, K = C_in/g*kh*kw.

    A depthwise convolution (one input and one output channel per group) has no reduction for a
    matrix unit to use; it is priced as vector work, as GPUs and NPUs run it.
    """
    w = node.inputs[1]
    g = node.attrs["groups"]
    nb, co, ho, wo = node.outputs[0].type.shape
    cig, kh, kw = w.type.shape[1], w.type.shape[2], w.type.shape[3]
    m, n, k = nb * ho * wo, co // g, cig * kh * kw
    macs = g * m * n * k
    ops = _out(node) if len(node.inputs) > 2 else 0
    ops += _requant_ops(node, _out(node))
    operands = _reads(node, ("input", "weight", "bias"))
    if n == 1 and cig == 1:
        return Work("vector", ops=2 * macs + ops, operands=operands, out_elements=_out(node), weight=w)
    return Work("matrix", macs=macs, ops=ops, gemm=(g, m, n, k), operands=operands,
                out_elements=_out(node), weight=w)


QUANT_OPERAND_ROLES = ("input", "param", "param", "weight", "param", "bias")
"""Roles of an integer product's operands: x, x_scale, x_zero_point, weight, weight_scale, bias."""


def _qoperands(node: Node) -> list[Operand]:
    """An integer product's operands with x and the weight first (what the precision is read from)."""
    ops = _reads(node, QUANT_OPERAND_ROLES)
    return [ops[0], ops[3]] + ops[1:3] + ops[4:]


def _dequant_ops(node: Node, n_out: int) -> int:
    """Per output element: scale the int32 accumulator (zero-point correction and scale, 2 ops), add the bias,
    and requantize (3 ops) when the op writes u8/i8."""
    return n_out * (2 + (1 if len(node.inputs) > 5 else 0)) + _requant_ops(node, n_out)


def qlinear_rule(node: Node) -> Work:
    """qlinear / qmatmul: one int8 GEMM (M = prod(leading axes)), int32 accumulation, dequantized per element."""
    x, w = node.inputs[0], node.inputs[3]
    k = x.type.shape[-1]
    n = w.type.shape[0] if node.op == "qlinear" else w.type.shape[1]
    m = math.prod(x.type.shape[:-1])
    return Work("matrix", macs=m * n * k, ops=_dequant_ops(node, m * n), gemm=(1, m, n, k),
                operands=_qoperands(node), out_elements=m * n, weight=w)


def qconv2d_rule(node: Node) -> Work:
    """qconv2d as an implicit int8 GEMM per group (M = N*Ho*Wo, N = C_out/g, K = C_in/g*kh*kw)."""
    w = node.inputs[3]
    g = node.attrs["groups"]
    nb, co, ho, wo = node.outputs[0].type.shape
    m, n, k = nb * ho * wo, co // g, math.prod(w.type.shape[1:])
    return Work("matrix", macs=g * m * n * k, ops=_dequant_ops(node, _out(node)), gemm=(g, m, n, k),
                operands=_qoperands(node), out_elements=_out(node), weight=w)


def quantize_dynamic_rule(node: Node) -> Work:
    """quantize-dynamic: a min/max pass (2 ops per element), then divide, round, add zero point, clip (4)."""
    n = _numel(node.inputs[0])
    return Work("convert", ops=6 * n, operands=_reads(node), out_elements=_out(node))


def vector_rule(ops_per_element: float) -> Callable[[Node], Work]:
    """A rule for an op doing `ops_per_element` vector ops per output element."""

    def rule(node: Node) -> Work:
        n = _out(node)
        return Work("vector", ops=math.ceil(ops_per_element * n), operands=_reads(node), out_elements=n)

    rule.__doc__ = f"Vector op: {ops_per_element} ops per output element."
    return rule


def reduce_rule(ops_per_input: float) -> Callable[[Node], Work]:
    """A rule for a reduction doing `ops_per_input` ops per input element."""

    def rule(node: Node) -> Work:
        n = _numel(node.inputs[0])
        return Work("vector", ops=math.ceil(ops_per_input * n), operands=_reads(node), out_elements=_out(node))

    rule.__doc__ = f"Reduction: {ops_per_input} ops per input element."
    return rule


def norm_rule(ops_per_element: float) -> Callable[[Node], Work]:
    """Normalizations: parameters (scale, bias, mean, var) are read as params, not weights."""

    def rule(node: Node) -> Work:
        n = _out(node)
        roles = ("input",) + ("param",) * (len(node.inputs) - 1)
        return Work("vector", ops=math.ceil(ops_per_element * n), operands=_reads(node, roles), out_elements=n)

    rule.__doc__ = f"Normalization: {ops_per_element} ops per element."
    return rule


def pool_rule(node: Node) -> Work:
    """Pooling: one op per window element per output."""
    kh, kw = node.attrs["kernel"]
    n = _out(node)
    return Work("vector", ops=n * kh * kw + (n if node.op == "avgpool2d" else 0), operands=_reads(node),
                out_elements=n)


def lrn_rule(node: Node) -> Work:
    """LRN: a sum of squares over `size` channels, then a power and a divide per element."""
    n = _out(node)
    return Work("vector", ops=n * (2 * node.attrs["size"] + 6), operands=_reads(node), out_elements=n)


def quantize_rule(node: Node) -> Work:
    """quantize: divide by scale, round, add zero point, clip (4 ops per element): not free."""
    n = _out(node)
    return Work("convert", ops=4 * n, operands=_reads(node), out_elements=n)


def dequantize_rule(node: Node) -> Work:
    """dequantize: subtract zero point, multiply by scale (2 ops per element)."""
    n = _out(node)
    return Work("convert", ops=2 * n, operands=_reads(node), out_elements=n)


def qadd_rule(node: Node) -> Work:
    """qadd: two dequantizations, an add and a requantization (8 ops per element), on 1-byte operands."""
    n = _out(node)
    return Work("convert", ops=8 * n, operands=_reads(node), out_elements=n)


def cast_rule(node: Node) -> Work:
    """cast: one conversion per element."""
    n = _out(node)
    return Work("convert", ops=n, operands=_reads(node), out_elements=n)


def view_rule(node: Node) -> Work:
    """Ops that only relabel memory (reshape, flatten, identity, dropout at inference): no work."""
    return Work("view", operands=[], out_elements=_out(node))


def copy_rule(node: Node) -> Work:
    """Data movement without arithmetic: read what is kept, write the output."""
    n = _out(node)
    if node.op == "slice":
        operands = [Operand(node.inputs[0], "input", n)]
    elif node.op == "gather":
        data, idx = node.inputs
        operands = [Operand(data, "weight" if data.is_constant else "input", n), Operand(idx, "index", _numel(idx))]
    else:
        operands = _reads(node)
    return Work("copy", operands=operands, out_elements=n)


_UNARY_OPS = {"relu": 1, "neg": 1, "abs": 1, "clip": 2, "sqrt": 4, "exp": 8, "log": 8, "erf": 10,
              "sigmoid": 10, "tanh": 10, "gelu": 14, "floor": 1, "ceil": 1, "round": 1, "sign": 2, "sin": 10,
              "cos": 10, "tan": 12, "asin": 12, "acos": 12, "atan": 12, "sinh": 12, "cosh": 12, "asinh": 14,
              "acosh": 14, "atanh": 14}
"""Vector ops per element; transcendental functions count as several (polynomial evaluations)."""

_BINARY_OPS = {"add": 1, "sub": 1, "mul": 1, "maximum": 1, "minimum": 1, "div": 4, "pow": 16, "mod": 8}

_LOGIC_OPS = {"equal": 1, "less": 1, "less-equal": 1, "greater": 1, "greater-equal": 1, "logical-and": 1,
              "logical-or": 1, "logical-xor": 1, "logical-not": 1, "where": 1}
"""Comparisons, logical ops and where: one vector op (compare, mask or blend) per element."""

def exit_rule(node: Node) -> Work:
    """exit: a softmax over each head (12 ops per element) and the criterion (about 4 per element read)."""
    n = _numel(node.inputs[0])
    return Work("vector", ops=12 * n + 4 * sum(_numel(v) for v in node.inputs[1:]), operands=_reads(node),
                out_elements=_out(node))


def fused_rule(node: Node) -> Work:
    """A fused region is one kernel: the work of its body's equations, but it reads only the region's
    inputs and writes only its output (intermediates stay in registers or on chip)."""
    body = node.attrs["body"]
    outer = {id(p): a for p, a in zip(body.inputs, node.inputs)}
    works = [node_work(n) for n in body.nodes]
    operands: dict[int, Operand] = {}
    for w in works:
        for o in w.operands:
            if id(o.value) in outer and id(o.value) not in operands:
                operands[id(o.value)] = Operand(outer[id(o.value)], o.role, o.elements)
    matrix = next((w for w in works if w.kind == "matrix"), None)
    kinds = {w.kind for w in works} - {"view"}
    kind = "matrix" if matrix is not None else ("vector" if "vector" in kinds or not kinds else kinds.pop())
    weight = outer.get(id(matrix.weight)) if matrix is not None and matrix.weight is not None else None
    return Work(kind, macs=sum(w.macs for w in works), ops=sum(w.ops for w in works),
                gemm=matrix.gemm if matrix is not None else None, operands=list(operands.values()),
                out_elements=_out(node), weight=weight)


COST_RULES: dict[str, Callable[[Node], Work]] = {
    "linear": linear_rule,
    "matmul": matmul_rule,
    "attention": attention_rule,
    "conv2d": conv2d_rule,
    **{op: vector_rule(k) for op, k in _UNARY_OPS.items()},
    **{op: vector_rule(k) for op, k in _BINARY_OPS.items()},
    **{op: vector_rule(k) for op, k in _LOGIC_OPS.items()},
    "gelu": vector_rule(14),
    "softmax": vector_rule(12),  # max, subtract, exp (8), sum, divide
    "layernorm": norm_rule(8),  # mean, variance, normalize, scale, shift
    "batchnorm": norm_rule(2),  # folded into one multiply-add per element
    "lrn": lrn_rule,
    "maxpool2d": pool_rule,
    "avgpool2d": pool_rule,
    "global-avgpool": reduce_rule(1),
    "reduce-sum": reduce_rule(1),
    "reduce-mean": reduce_rule(1),
    "reduce-max": reduce_rule(1),
    "argmax": reduce_rule(2),
    "cumsum": vector_rule(1),
    "topk": reduce_rule(8),
    "argmin": reduce_rule(2),
    "quantize": quantize_rule,
    "quantize-dynamic": quantize_dynamic_rule,
    "qlinear": qlinear_rule,
    "qmatmul": qlinear_rule,
    "qconv2d": qconv2d_rule,
    "qadd": qadd_rule,
    "dequantize": dequantize_rule,
    "cast": cast_rule,
    "reshape": view_rule,
    "flatten": view_rule,
    "identity": view_rule,
    "dropout": view_rule,
    "transpose": copy_rule,
    "concat": copy_rule,
    "slice": copy_rule,
    "gather": copy_rule,
    "gather-elements": copy_rule,
    "scatter-elements": copy_rule,
    "gather-nd": copy_rule,
    "scatter-nd": copy_rule,
    "fused": fused_rule,
    "exit": exit_rule,
    "exit_select": copy_rule,
}
"""op -> rule(node) -> Work. Add an entry here to price a new op; ir/ is never touched."""


def node_work(node: Node, rules: dict[str, Callable[[Node], Work]] | None = None) -> Work:
    """The Work of `node`, or a CostError naming the node and op when no rule exists."""
    table = COST_RULES if rules is None else rules
    rule = table.get(node.op)
    if rule is None:
        raise CostError(f"no cost rule for op {node.op!r} (node %{node.name}); add one to COST_RULES")
    return rule(node)
