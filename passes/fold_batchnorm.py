"""fold-batchnorm: fold inference batch norm into the conv2d or linear in front of it."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Value
from .base import Pass, PassContext, PassResult, register_pass
from .rewrite import Const, Rewriter, Var, apply_rules, format_hits, op, rules


def _bn_affine(rw: Rewriter, scale: Value, bias: Value, mean: Value, var: Value) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (a, c) with batchnorm(y) = a * y + c, in float64."""
    eps = rw.root.attrs["epsilon"]
    a = scale.data.astype(np.float64) / np.sqrt(var.data.astype(np.float64) + eps)  # type: ignore[union-attr]
    c = bias.data.astype(np.float64) - mean.data.astype(np.float64) * a  # type: ignore[union-attr]
    return a, c


def _fold(rw: Rewriter, producer: Value, w: Value, scale: Value, bias: Value, mean: Value,
          var: Value) -> Value | None:
    node = producer.producer
    assert node is not None and w.data is not None
    if not w.type.dtype.is_float or w.type.quant is not None:
        return None
    if node.op == "linear" and producer.type.rank != 2:
        return None  # batchnorm's channel axis 1 is not linear's feature axis
    a, c = _bn_affine(rw, scale, bias, mean, var)
    shape = (-1,) + (1,) * (w.data.ndim - 1)
    new_w = (w.data.astype(np.float64) * a.reshape(shape)).astype(w.data.dtype)
    old_b = node.inputs[2].data.astype(np.float64) if len(node.inputs) == 3 else 0.0  # type: ignore[union-attr]
    if len(node.inputs) == 3 and node.inputs[2].data is None:
        return None
    new_b = (old_b * a + c).astype(w.data.dtype)
    base = node.name
    w_c, b_c = rw.const(new_w, f"{base}.weight"), rw.const(new_b, f"{base}.bias")
    return rw.emit(node.op, node.inputs[0], w_c, b_c, **node.attrs)


def _bn_rule(producer_op: str):  # type: ignore[no-untyped-def]
    inner = op(producer_op, Var("x"), Const("w"), capture="producer", single_use=True, partial=True)
    pattern = op("batchnorm", inner, Const("scale"), Const("bias"), Const("mean"), Const("var"))

    def fn(rw: Rewriter, producer: Value, x: Value, w: Value, **bn: Value) -> Value | None:
        return _fold(rw, producer, w, **bn)

    return (f"batchnorm-into-{producer_op}", pattern, fn)


FOLD_BATCHNORM_RULES = rules(_bn_rule("conv2d"), _bn_rule("linear"))


@register_pass
class FoldBatchNorm(Pass):
    """Folds batchnorm(conv2d(x, W, b)) into conv2d(x, W*a, b*a + c) (and the same for linear).

    Exact up to float rounding: the folded weights are computed in float64 and rounded once,
    so outputs move by a few ulps (the stated bound is rtol=1e-4, atol=1e-5).
    """

    name = "fold-batchnorm"
    exact = False
    tolerance = (1e-4, 1e-5)

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Fold every eligible batchnorm; report what stayed and why."""
        hits = apply_rules(graph, FOLD_BATCHNORM_RULES)
        left = []
        for n in graph.nodes_of("batchnorm"):
            src = n.inputs[0].producer
            if src is None or src.op not in ("conv2d", "linear"):
                why = f"its input comes from {src.op if src else 'a graph input'}"
            elif (sum(1 for m in graph.nodes for v in m.inputs if v is n.inputs[0])
                  + sum(1 for v in graph.outputs if v is n.inputs[0])) > 1:
                why = f"%{src.name} has other users"
            elif not all(v.is_constant for v in n.inputs[1:]) or not src.inputs[1].is_constant:
                why = "its parameters or the weights are not constants"
            else:
                why = "the linear output is not 2-D, or weights are not float"
            left.append(f"%{n.name} kept: {why}")
        report = format_hits(hits) + ("; " + "; ".join(left) if left else "")
        return PassResult(graph, bool(hits), report, {"folded": sum(hits.values()), "kept": len(left)})
