"""Nodes the Numba kernels do not compute run their reference rule as one step of the plan: f64 without a
dtype-generic kernel, half-precision arithmetic, int4 values, boolean reductions and scatters.

The elementwise, cast and data-movement kernels are generic over their array dtypes (Numba compiles
one version per signature), so an f64 graph runs them at full precision. The other kernels (products,
convolutions, normalizations, pooling, reductions, transcendental maps, fused matrix regions) are
written for f32 (packed f32 micro-kernels, f32 constants, f32 accumulators); a node of theirs that
reads or writes f64 runs its reference rule instead, as one step of the plan. Its results are the
reference backend's bit for bit, never f32 results widened back. f16 and bf16 values are stored, moved and
cast by the kernels (`jit.STORAGE_OPS`); any other node reading or writing one runs its reference rule the same way
(an importer or a pass that wants speed casts to f32 first, as `quantize{precision=fp16}` graphs do), and so does
every node on an int4 value but a constant weight behind `dequantize`.
"""

from __future__ import annotations

import numpy as np

from ...ir.graph import Node
from ...ir.regions import region_anchor, region_body
from ..reference import evaluate_node
from .jit import STORAGE_DTYPES, STORAGE_OPS
from .plan import LowerCtx
from .registry import NUMBA_LOWERINGS

F64_KERNEL_OPS = frozenset({
    "identity", "dropout", "relu", "neg", "abs", "clip", "sqrt",
    "add", "sub", "mul", "div", "pow", "maximum", "minimum",
    "reshape", "flatten", "transpose", "slice", "concat", "gather",
})
"""Ops whose Numba kernels are generic over the float dtype: they run f64 at full precision."""

HALF_NAMES = frozenset({"f16", "bf16"})
"""Casts between f64 and these go through the reference rule: the kernels convert via f32 (double rounding)."""


def is_f64_node(node: Node) -> bool:
    """Whether `node` reads or writes an f64 value."""
    return any(v.type.dtype.name == "f64" for v in [*node.inputs, *node.outputs])


def is_half_arithmetic(node: Node) -> bool:
    """Whether `node` computes on an f16 or bf16 value (anything but storing, moving and casting it)."""
    return node.op not in STORAGE_OPS and any(v.type.dtype.name in STORAGE_DTYPES
                                              for v in [*node.inputs, *node.outputs])


def is_int4_node(node: Node) -> bool:
    """Whether `node` reads or writes an i4 value other than a constant weight behind `dequantize` (which the
    weight-only GEMM reads packed, or the lowering widens at compile time)."""
    if node.op == "dequantize" and node.inputs[0].data is not None:
        return False
    return any(v.type.dtype.name == "i4" for v in [*node.inputs, *node.outputs])


def runs_reference_rule(node: Node) -> bool:
    """Whether `node` runs its reference rule: half-precision arithmetic, any node on an int4 value (no kernel
    takes ml_dtypes' int4), or an f64 node whose op has no Numba kernel computing in f64."""
    if is_half_arithmetic(node) or is_int4_node(node):
        return True
    if not is_f64_node(node):
        return False
    if node.op == "cast":
        return any(v.type.dtype.name in HALF_NAMES for v in [*node.inputs, *node.outputs])
    if node.op == "fused":
        return region_anchor(region_body(node)) is not None
    return node.op not in F64_KERNEL_OPS


class ReferenceStep:
    """Runs `node`'s reference rule on the plan's arrays and writes its outputs in place."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.n_inputs = len(node.inputs)

    def __call__(self, *arrays: np.ndarray) -> None:
        """arrays: the node's inputs, then the arrays its outputs go to."""
        results = evaluate_node(self.node, list(arrays[:self.n_inputs]))
        for dst, res in zip(arrays[self.n_inputs:], results):
            np.copyto(dst, res, casting="no")


def lower_with_reference(ctx: LowerCtx, node: Node) -> None:
    """Emit one step that runs `node`'s reference rule (the f64 path of ops without an f64 kernel)."""
    ins = [ctx.slot(v) for v in node.inputs]
    outs = [ctx.out(v) for v in node.outputs]
    work = sum(v.type.numel for v in node.outputs)
    ctx.emit(f"reference_{node.op}", ReferenceStep(node), *ins, *outs, writes=tuple(outs), work=work)


def lower_node(ctx: LowerCtx, node: Node) -> None:
    """Lower `node` through its Numba rule, or its reference rule when it is f64 and its kernel is f32-only."""
    if runs_reference_rule(node):
        lower_with_reference(ctx, node)
    else:
        NUMBA_LOWERINGS[node.op](ctx, node)
