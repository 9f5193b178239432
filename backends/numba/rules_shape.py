"""Lowering of data-movement ops: reshape/flatten/transpose/slice are views; concat and gather copy."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...ir.graph import Node
from .k_data import ScatterReduction, copy_block, gather, gather_elements, gather_nd, scatter_elements, scatter_nd
from .plan import Lit, LowerCtx
from .reference_steps import lower_with_reference
from .registry import lowers


@dataclass(frozen=True)
class Transpose:
    """View function: np.transpose with a fixed permutation."""

    perm: tuple[int, ...]

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return a.transpose(self.perm)


@dataclass(frozen=True)
class Index:
    """View function: basic indexing with a fixed tuple of slices."""

    index: tuple[slice, ...]

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return a[self.index]


@lowers("reshape", "flatten")
def _reshape(ctx: LowerCtx, node: Node) -> None:
    v = node.outputs[0]
    ctx.value_slot[id(v)] = ctx.reshaped(ctx.arg(node.inputs[0]), v.type.shape)


@lowers("transpose")
def _transpose(ctx: LowerCtx, node: Node) -> None:
    ctx.view(ctx.slot(node.inputs[0]), Transpose(tuple(node.attrs["perm"])), node.name, node.outputs[0])


@lowers("slice")
def _slice(ctx: LowerCtx, node: Node) -> None:
    x = node.inputs[0]
    idx = [slice(None)] * x.type.rank
    a = node.attrs
    for st, en, ax, sp in zip(a["starts"], a["ends"], a["axes"], a["steps"]):
        idx[ax % x.type.rank] = slice(st, en, sp)
    ctx.view(ctx.slot(x), Index(tuple(idx)), node.name, node.outputs[0])


@lowers("concat")
def _concat(ctx: LowerCtx, node: Node) -> None:
    v = node.outputs[0]
    shape = v.type.shape
    axis = node.attrs["axis"] % len(shape)
    out = ctx.out(v)
    lead, tail = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
    dst = ctx.reshaped(out, (lead, shape[axis] * tail))
    col = 0
    for x in node.inputs:
        width = x.type.shape[axis] * tail
        if width and lead:
            src = ctx.reshaped(ctx.arg(x), (lead, width))
            ctx.emit("concat_copy", copy_block, ctx.bits(src), ctx.bits(dst), Lit(col), writes=(out,),
                     work=lead * width)
        col += width


class _IndexedCall:
    """Runs an indexing kernel (arrays, then `extra` literals; the indices second) and turns the bad index it reports
    into an IndexError naming the node."""

    def __init__(self, kernel: Any, where: str, n: int, axis: int, *extra: Any) -> None:
        self.kernel, self.where, self.n, self.axis, self.extra = kernel, where, n, axis, extra

    def __call__(self, *arrays: np.ndarray) -> None:
        bad = self.kernel(*arrays, *self.extra)
        if bad >= 0:
            raise IndexError(f"{self.where}: index {int(arrays[1].reshape(-1)[bad])} is out of range "
                             f"[{-self.n}, {self.n}) on axis {self.axis}")


def _elements_views(ctx: LowerCtx, node: Node) -> tuple[int, int, tuple[int, int, int], tuple[int, int, int]]:
    """(data's slot, the output's, data's [A, D, B] shape, the indices' [A, R, B]) around the node's axis."""
    data, indices = node.inputs[:2]
    axis = node.attrs["axis"] % data.type.rank
    ds, ish = data.type.shape, indices.type.shape
    lead, tail = math.prod(ds[:axis]), math.prod(ds[axis + 1:])
    return ctx.arg(data), ctx.out(node.outputs[0]), (lead, ds[axis], tail), (lead, ish[axis], tail)


def _checked(kernel: Any, node: Node, n: int, *extra: Any) -> _IndexedCall:
    return _IndexedCall(kernel, f"{node.op} %{node.outputs[0].name}", n, node.attrs["axis"] % node.inputs[0].type.rank,
                        *extra)


@lowers("gather-elements")
def _gather_elements(ctx: LowerCtx, node: Node) -> None:
    data, out, dshape, ishape = _elements_views(ctx, node)
    if node.outputs[0].type.numel == 0:
        return
    par = ctx.parallel(node.outputs[0].type.numel)
    ctx.twins[gather_elements.name] = gather_elements
    ctx.emit("gather_elements" + ("[par]" if par else ""), _checked(gather_elements.pick(par), node, dshape[1]),
             ctx.bits(ctx.reshaped(data, dshape)), ctx.reshaped(ctx.arg(node.inputs[1]), ishape),
             ctx.bits(ctx.reshaped(out, ishape)), writes=(out,))


@lowers("scatter-elements")
def _scatter_elements(ctx: LowerCtx, node: Node) -> None:
    if node.inputs[0].type.dtype.np_dtype.kind not in "fiu":  # booleans: the reference rule
        lower_with_reference(ctx, node)
        return
    data, out, dshape, ishape = _elements_views(ctx, node)
    if node.outputs[0].type.numel == 0:
        return
    reduction = int(ScatterReduction[node.attrs["reduction"].upper()])
    ctx.twins[scatter_elements.name] = scatter_elements
    ctx.emit("scatter_elements", _checked(scatter_elements.pick(False), node, dshape[1], reduction),
             ctx.reshaped(data, dshape), ctx.reshaped(ctx.arg(node.inputs[1]), ishape),
             ctx.reshaped(ctx.arg(node.inputs[2]), ishape), ctx.reshaped(out, dshape), writes=(out,))


def _tuple_tables(ctx: LowerCtx, node: Node, dims: tuple[int, ...]) -> tuple[int, int]:
    """Constant slots of the indexed axes' sizes and their strides (in elements of the [.., P, S] view's P)."""
    strides = [math.prod(dims[j + 1:]) for j in range(len(dims))]
    return (ctx.const(np.asarray(dims, np.int64), f"{node.name}.dims"),
            ctx.const(np.asarray(strides, np.int64), f"{node.name}.strides"))


class _TupleCall:
    """Runs a tuple-indexing kernel and turns the bad entry it reports into an IndexError naming the node."""

    def __init__(self, kernel: Any, where: str, dims: tuple[int, ...], *extra: Any) -> None:
        self.kernel, self.where, self.dims, self.extra = kernel, where, dims, extra

    def __call__(self, *arrays: np.ndarray) -> None:
        bad = self.kernel(*arrays, *self.extra)
        if bad >= 0:
            j = bad % len(self.dims)
            raise IndexError(f"{self.where}: index {int(arrays[1].reshape(-1)[bad])} is out of range "
                             f"[{-self.dims[j]}, {self.dims[j]}) for indexed axis {j}")


@lowers("gather-nd")
def _gather_nd(ctx: LowerCtx, node: Node) -> None:
    data, indices = node.inputs
    v = node.outputs[0]
    b, k = node.attrs["batch_dims"], indices.type.shape[-1]
    ds, ish = data.type.shape, indices.type.shape
    nb, dims, s = math.prod(ds[:b]), ds[b:b + k], math.prod(ds[b + k:])
    nq = math.prod(ish[b:-1])
    out = ctx.out(v)
    if v.type.numel == 0:
        return
    dims_slot, strides_slot = _tuple_tables(ctx, node, dims)
    par = ctx.parallel(v.type.numel)
    ctx.twins[gather_nd.name] = gather_nd
    ctx.emit("gather_nd" + ("[par]" if par else ""), _TupleCall(gather_nd.pick(par), f"gather-nd %{v.name}", dims),
             ctx.bits(ctx.reshaped(ctx.arg(data), (nb, math.prod(dims), s))),
             ctx.reshaped(ctx.arg(indices), (nb, nq, k)), dims_slot, strides_slot,
             ctx.bits(ctx.reshaped(out, (nb, nq, s))), writes=(out,))


@lowers("scatter-nd")
def _scatter_nd(ctx: LowerCtx, node: Node) -> None:
    data, indices, updates = node.inputs
    if data.type.dtype.np_dtype.kind not in "fiu":  # booleans: the reference rule
        lower_with_reference(ctx, node)
        return
    v = node.outputs[0]
    k = indices.type.shape[-1]
    dims, s = data.type.shape[:k], math.prod(data.type.shape[k:])
    nq = math.prod(indices.type.shape[:-1])
    out = ctx.out(v)
    if v.type.numel == 0:
        return
    dims_slot, strides_slot = _tuple_tables(ctx, node, dims)
    reduction = int(ScatterReduction[node.attrs["reduction"].upper()])
    ctx.twins[scatter_nd.name] = scatter_nd
    ctx.emit("scatter_nd", _TupleCall(scatter_nd.pick(False), f"scatter-nd %{v.name}", dims, reduction),
             ctx.reshaped(ctx.arg(data), (math.prod(dims), s)), ctx.reshaped(ctx.arg(indices), (nq, k)),
             ctx.reshaped(ctx.arg(updates), (nq, s)), dims_slot, strides_slot,
             ctx.reshaped(out, (math.prod(dims), s)), writes=(out,))


@lowers("gather")
def _gather(ctx: LowerCtx, node: Node) -> None:
    data, indices = node.inputs
    v = node.outputs[0]
    axis = node.attrs["axis"] % data.type.rank
    ds = data.type.shape
    lead, nd, tail = math.prod(ds[:axis]), ds[axis], math.prod(ds[axis + 1:])
    ni = indices.type.numel
    out = ctx.out(v)
    if v.type.numel == 0 and ni == 0:
        return
    d3 = ctx.bits(ctx.reshaped(ctx.arg(data), (lead, nd, tail)))
    idx = ctx.flat_of(ctx.arg(indices))
    o3 = ctx.bits(ctx.reshaped(out, (lead, ni, tail)))
    par = ctx.parallel(v.type.numel)
    call = _IndexedCall(gather.pick(par), f"gather %{v.name}", nd, axis)
    ctx.twins[gather.name] = gather
    ctx.emit("gather" + ("[par]" if par else ""), call, d3, idx, o3, writes=(out,))
