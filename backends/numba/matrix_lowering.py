"""What the matrix-product lowerings (rules_dense: linear / matmul, rules_conv: conv2d) share.

Work units of a product, the epilogue's kernel arguments, the residual argument, the anchor's own
bias as a first epilogue stage, and the kernel label.
"""

from __future__ import annotations

import numpy as np

from ...ir.graph import Node, Value
from .epilogue import Epilogue
from .plan import LowerCtx

FLOPS_PER_UNIT = 32
"""Products count their flops / 32 as work (a GEMM flop costs far less than an elementwise element)."""


def epilogue_args(ctx: LowerCtx, epi: Epilogue) -> tuple[int, int, int]:
    """Const slots of the epilogue's stage codes, vectors and scalar parameters."""
    return ctx.const(epi.codes(), "stages"), ctx.const(epi.vectors(), "vecs"), ctx.const(epi.params(), "params")


def residual_arg(ctx: LowerCtx, epi: Epilogue, shape: tuple[int, ...]) -> int:
    """The residual as a contiguous slot of `shape` (the kernel's view of the product), or a one-element dummy."""
    if epi.residual is None:
        return ctx.const(np.zeros((1,) * len(shape), np.float32), "no_residual")
    return ctx.reshaped(ctx.arg(epi.residual), shape)


def own_bias(node: Node, epi: Epilogue) -> tuple[Epilogue, Value | None]:
    """The epilogue with a linear's / conv's constant bias as its first stage, and a non-constant bias to add
    afterwards by its own kernel (only without other stages: see epilogue.accepts_epilogue)."""
    if node.op not in ("linear", "conv2d") or len(node.inputs) < 3:
        return epi, None
    bias = node.inputs[2]
    if bias.is_constant and bias.type.dtype.name == "f32":
        return epi.with_bias(bias.data), None
    return epi, bias


def kernel_label(base: str, epi: Epilogue) -> str:
    """The kernel's label: `base` and the epilogue's stages, e.g. 'gemm_uk+add+gelu'."""
    stages = epi.label()
    return f"{base}+{stages}" if stages else base


def constant_data(ctx: LowerCtx, v: Value) -> np.ndarray | None:
    """The array of `v` when it is known at compile time: a constant, a region parameter bound to one, or a value
    the lowering made a constant (a weight dequantized once, at compile time); None when it is computed at run
    time."""
    if v.is_constant:
        return np.asarray(v.data)
    bound = ctx.value_slot.get(id(v))
    if bound is not None and ctx.slots[bound].kind == "const":
        return ctx.slots[bound].array
    if v.producer is None or v.producer.op != "dequantize" or not all(i.is_constant for i in v.producer.inputs):
        return None
    slot = ctx.slots[ctx.slot(v)]
    return slot.array if slot.kind == "const" else None


RELABELINGS = frozenset({"reshape", "flatten", "identity"})
"""Ops that give a value another shape without moving it."""


def read_by_heads(ctx: LowerCtx, node: Node | None) -> bool:
    """Whether the node's result is read only by `attention` nodes (through relabelings): attention splits its
    threads by heads, that is by the product's columns, so the product splits its panels to match."""
    if node is None:
        return False
    frontier, seen = list(node.outputs), 0
    while frontier:
        v = frontier.pop()
        for reader in ctx.readers(v):
            if reader.op in RELABELINGS:
                frontier.extend(reader.outputs)
            elif reader.op == "attention":
                seen += 1
            else:
                return False
    return seen > 0
