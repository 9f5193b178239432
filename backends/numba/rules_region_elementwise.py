"""Lowering of elementwise regions to one generated kernel that reads every parameter in place through its strides."""

from __future__ import annotations

import numpy as np

from ...ir.graph import Node
from ...ir.regions import region_label
from .plan import Lit, LowerCtx
from .region_cache import load_kernel
from .region_codegen import InnerStep, UnsupportedBody, region_equations, region_source, region_work

INNER_STEPS = {0: InnerStep.BROADCAST, 1: InnerStep.CONTIGUOUS}
"""Inner strides with a loop of their own; any other stride is InnerStep.STRIDED."""


def c_strides(shape: tuple[int, ...]) -> list[int]:
    """Element strides of a C-contiguous array of `shape`."""
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= max(d, 1)
    return out[::-1]


def collapse_axes(shape: tuple[int, ...], strides: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Drop axes of extent 1 and merge neighbours that are contiguous for every operand.

    `strides[k]` are operand k's element strides over the axes of `shape` (0 on broadcast axes).
    Returns the remaining extents and each operand's strides over them.
    """
    extents: list[int] = []
    merged: list[list[int]] = [[] for _ in strides]
    for axis, extent in enumerate(shape):
        if extent == 1:
            continue
        if extents and all(st[-1] == s[axis] * extent for st, s in zip(merged, strides)):
            extents[-1] *= extent
            for st, s in zip(merged, strides):
                st[-1] = s[axis]
            continue
        extents.append(extent)
        for st, s in zip(merged, strides):
            st.append(s[axis])
    return extents, merged


def lower_elementwise_region(ctx: LowerCtx, node: Node) -> bool:
    """Emit the region `node` as one generated kernel; False (nothing emitted) for a body it cannot express."""
    body = node.attrs["body"]
    try:
        equations = region_equations(body)
    except UnsupportedBody:
        return False
    v = node.outputs[0]
    shape = v.type.shape
    out = ctx.out(v)
    if v.type.numel == 0:
        return True
    roots, offsets, strides = [], [], []
    for arg in node.inputs:
        slot = ctx.writable_const(arg) if arg.is_constant else ctx.slot(arg)
        root, offset, own = ctx.layout(slot)
        arg_shape = ctx.slots[slot].shape  # a constant scalar's slot may hold it as [1]
        mine = [0 if d == 1 else st for d, st in zip(arg_shape, own)][len(arg_shape) - len(arg.type.shape):]
        strides.append([0] * (len(shape) - len(mine)) + mine)
        roots.append(ctx.flat_of(root))
        offsets.append(offset)
    extents, merged = collapse_axes(shape, strides + [c_strides(shape)])
    merged = merged[:-1]
    if extents:
        outer, length = extents[:-1], extents[-1]
        steps = [st[-1] for st in merged]
        outer_strides = [st[:-1] for st in merged]
    else:
        outer, length, steps, outer_strides = [], 1, [0] * len(merged), [[] for _ in merged]
    inner = [INNER_STEPS.get(s, InnerStep.STRIDED) for s in steps]
    label = region_label(body)
    kernel = load_kernel(region_source(body, equations, inner, label))
    ctx.emit(f"region_{label}", kernel, *roots, ctx.flat_of(out), Lit(np.array(outer, np.int64)),
             Lit(np.array(offsets, np.int64)), Lit(np.array(outer_strides, np.int64).reshape(len(roots), len(outer))),
             Lit(np.array(steps, np.int64)), Lit(length), writes=(out,), work=region_work(equations, v.type.numel))
    return True
