"""Ops that move data without arithmetic: reshape, transpose, concat, slice, gather, flatten."""

from __future__ import annotations

import math
from typing import Any

from ..types import TensorType
from .registry import Attr, attr_error, dtype_error, register_op, shape_error


def norm_axis(op: str, axis: int, rank: int) -> int:
    """`axis` made non-negative; an error names the op when it is out of range."""
    if not -rank <= axis < max(rank, 1):
        raise attr_error(f"{op}: axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def resolve_reshape(op: str, src: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The target shape with one -1 resolved; errors when element counts disagree."""
    n = math.prod(src)
    if shape.count(-1) > 1 or any(d < -1 for d in shape):
        raise attr_error(f"{op}: shape {list(shape)} may hold at most one -1 and no other negatives")
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or n % known:
            raise shape_error(f"{op}: cannot reshape {list(src)} ({n} elements) to {list(shape)}")
        shape = tuple(n // known if d == -1 else d for d in shape)
    if math.prod(shape) != n:
        raise shape_error(f"{op}: cannot reshape {list(src)} ({n} elements) to {list(shape)}")
    return shape


@register_op("reshape", ("x",), (Attr("shape", "ints"),),
             doc="View x with another shape (one -1 allowed).")
def _reshape(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    return [TensorType(resolve_reshape("reshape", ts[0].shape, a["shape"]), ts[0].dtype)]


@register_op("transpose", ("x",), (Attr("perm", "ints"),),
             doc="Permute axes: out.shape[i] = x.shape[perm[i]].")
def _transpose(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    perm, s = a["perm"], ts[0].shape
    if sorted(perm) != list(range(len(s))):
        raise attr_error(f"transpose: perm {list(perm)} is not a permutation of {len(s)} axes")
    return [TensorType(tuple(s[p] for p in perm), ts[0].dtype)]


@register_op("flatten", ("x",), (Attr("axis", "int", 1),),
             doc="Reshape to 2-D: [prod(shape[:axis]), prod(shape[axis:])].")
def _flatten(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    s = ts[0].shape
    axis = a["axis"]
    if not -len(s) <= axis <= len(s):
        raise attr_error(f"flatten: axis {axis} is out of range for rank {len(s)}")
    if axis < 0:
        axis += len(s)
    return [TensorType((math.prod(s[:axis]), math.prod(s[axis:])), ts[0].dtype)]


@register_op("concat", ("inputs*",), (Attr("axis", "int"),), doc="Join inputs along axis.")
def _concat(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    if not ts:
        raise shape_error("concat: needs at least one input")
    r = ts[0].rank
    axis = norm_axis("concat", a["axis"], r)
    for t in ts[1:]:
        if t.dtype != ts[0].dtype:
            raise dtype_error(f"concat: inputs have different dtypes {[t.dtype.name for t in ts]}")
        if t.rank != r or any(t.shape[i] != ts[0].shape[i] for i in range(r) if i != axis):
            raise shape_error(
                f"concat: shapes {[list(t.shape) for t in ts]} differ outside axis {axis}"
            )
    shape = list(ts[0].shape)
    shape[axis] = sum(t.shape[axis] for t in ts)
    return [TensorType(tuple(shape), ts[0].dtype)]


def slice_length(dim: int, start: int, end: int, step: int) -> int:
    """Length of numpy's x[start:end:step] on an axis of size `dim`."""
    return len(range(*slice(start, end, step).indices(dim)))


@register_op(
    "slice",
    ("x",),
    (Attr("starts", "ints"), Attr("ends", "ints"), Attr("axes", "ints"), Attr("steps", "ints")),
    doc="x[starts:ends:steps] on the given axes, numpy clamping rules.",
)
def _slice(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    s = list(ts[0].shape)
    n = len(a["axes"])
    if not len(a["starts"]) == len(a["ends"]) == len(a["steps"]) == n:
        raise attr_error("slice: starts, ends, axes and steps must have equal lengths")
    if any(st == 0 for st in a["steps"]):
        raise attr_error("slice: steps must be non-zero")
    seen = set()
    for st, en, ax, sp in zip(a["starts"], a["ends"], a["axes"], a["steps"]):
        ax = norm_axis("slice", ax, len(s))
        if ax in seen:
            raise attr_error(f"slice: axis {ax} is given twice")
        seen.add(ax)
        s[ax] = slice_length(ts[0].shape[ax], st, en, sp)
    return [TensorType(tuple(s), ts[0].dtype)]


@register_op("gather-elements", ("data", "indices"), (Attr("axis", "int", 0),),
             doc="out[..., i, ...] = data[..., indices[..., i, ...], ...] along axis (numpy's take_along_axis): "
                 "indices of data's rank and shape but along axis; negative ones count from the end.")
def _gather_elements(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    d, idx = ts
    if idx.dtype.is_float or idx.dtype.name == "bool":
        raise dtype_error(f"gather-elements: indices must be integers, got {idx.dtype.name}")
    axis = norm_axis("gather-elements", a["axis"], d.rank)
    if idx.rank != d.rank or any(i != n for k, (i, n) in enumerate(zip(idx.shape, d.shape)) if k != axis):
        raise shape_error(f"gather-elements: indices {list(idx.shape)} must have data's shape {list(d.shape)} but "
                          f"along axis {axis}")
    return [TensorType(idx.shape, d.dtype)]


def _nd_indices(op: str, d: TensorType, idx: TensorType, batch: int) -> int:
    """k, the length of indices' last axis (data axes batch..batch+k-1 are indexed), after the shared checks."""
    if idx.dtype.is_float or idx.dtype.name == "bool":
        raise dtype_error(f"{op}: indices must be integers, got {idx.dtype.name}")
    if idx.rank < 1 or not 0 <= batch < min(d.rank, idx.rank) or idx.shape[:batch] != d.shape[:batch]:
        raise shape_error(f"{op}: indices {list(idx.shape)} do not index data {list(d.shape)} with batch_dims={batch}")
    k = idx.shape[-1]
    if not 1 <= k <= d.rank - batch:
        raise shape_error(f"{op}: index tuples of length {k} for data {list(d.shape)} with batch_dims={batch}")
    return k


@register_op("gather-nd", ("data", "indices"), (Attr("batch_dims", "int", 0),),
             doc="out[b..., q...] = data[b..., indices[b..., q..., :], ...]: each index tuple (indices' last axis, "
                 "negative entries from the end) picks a slice of data after the batch_dims shared leading axes.")
def _gather_nd(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    d, idx = ts
    batch = a["batch_dims"]
    k = _nd_indices("gather-nd", d, idx, batch)
    return [TensorType(idx.shape[:-1] + d.shape[batch + k:], d.dtype)]


SCATTER_REDUCTIONS = ("none", "add", "mul", "max", "min")
"""How scatter-elements combines an update with the element it lands on: replace, or reduce with it."""


@register_op("scatter-elements", ("data", "indices", "updates"),
             (Attr("axis", "int", 0), Attr("reduction", "str", "none", SCATTER_REDUCTIONS)),
             doc="data with updates[..., i, ...] written to (or combined by `reduction` with) data[..., "
                 "indices[..., i, ...], ...] along axis, in update order (the last of duplicates wins with none); "
                 "indices and updates of data's shape but along axis.")
def _scatter_elements(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    d, idx, upd = ts
    if idx.dtype.is_float or idx.dtype.name == "bool":
        raise dtype_error(f"scatter-elements: indices must be integers, got {idx.dtype.name}")
    if upd.dtype != d.dtype:
        raise dtype_error(f"scatter-elements: updates {upd.dtype.name} differ from data {d.dtype.name}")
    axis = norm_axis("scatter-elements", a["axis"], d.rank)
    if upd.shape != idx.shape or idx.rank != d.rank or \
            any(i != n for k, (i, n) in enumerate(zip(idx.shape, d.shape)) if k != axis):
        raise shape_error(f"scatter-elements: indices {list(idx.shape)} and updates {list(upd.shape)} must have "
                          f"data's shape {list(d.shape)} but along axis {axis}")
    return [d]


@register_op("scatter-nd", ("data", "indices", "updates"),
             (Attr("reduction", "str", "none", SCATTER_REDUCTIONS),),
             doc="data with each update slice written to (or combined by `reduction` with) the slice its index "
                 "tuple (indices' last axis) picks, in update order.")
def _scatter_nd(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    d, idx, upd = ts
    k = _nd_indices("scatter-nd", d, idx, 0)
    if upd.dtype != d.dtype or upd.shape != idx.shape[:-1] + d.shape[k:]:
        raise shape_error(f"scatter-nd: updates {upd} must be {d.dtype.name}{list(idx.shape[:-1] + d.shape[k:])}")
    return [d]


@register_op("gather", ("data", "indices"), (Attr("axis", "int", 0),),
             doc="Take data[..., indices, ...] along axis (embedding lookup).")
def _gather(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    d, idx = ts
    if idx.dtype.is_float or idx.dtype.name == "bool":
        raise dtype_error(f"gather: indices must be integers, got {idx.dtype.name}")
    axis = norm_axis("gather", a["axis"], d.rank)
    return [TensorType(d.shape[:axis] + idx.shape + d.shape[axis + 1 :], d.dtype)]
