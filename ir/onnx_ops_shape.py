"""ONNX converters for constants, shape computations and data movement.

Shape, Size, ConstantOfShape, Range and the comparison/selection ops used in shape
subgraphs are evaluated at import and need constant inputs; Reshape, Slice, Squeeze,
Unsqueeze, Expand, Tile, Pad and CenterCropPad need their shape-like inputs constant (after folding); EyeLike is
a constant of its input's (static) shape; ReverseSequence is a `gather-elements` along the time axis at indices
computed from sequence_lens (constant or at run time).
"""

from __future__ import annotations

import numpy as np

from .dtypes import dtype_from_numpy
from .onnx_context import (
    Handle,
    NodeContext,
    UnsupportedError,
    converter,
    describe,
    norm_axis,
    np_dtype,
    np_dtype_of_onnx,
    shape_of,
)

INT64_MAX = np.iinfo(np.int64).max


def _ints(arr: np.ndarray | None) -> list[int] | None:
    return None if arr is None else [int(v) for v in np.asarray(arr).reshape(-1)]


@converter("Constant")
def _constant(ctx: NodeContext) -> list[Handle | None]:
    if ctx.has_attr("value"):
        return [np.asarray(ctx.attr("value"))]
    for name, dt in (("value_float", np.float32), ("value_floats", np.float32),
                     ("value_int", np.int64), ("value_ints", np.int64)):
        if ctx.has_attr(name):
            return [np.asarray(ctx.attr(name), dtype=dt)]
    raise UnsupportedError("Constant without a dense numeric value (sparse or string tensors)")


@converter("ConstantOfShape")
def _constant_of_shape(ctx: NodeContext) -> list[Handle | None]:
    shape = _ints(ctx.const(0, "shape")) or []
    value = ctx.attr("value")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    if fill.size != 1:
        raise ValueError(f"value must hold one element, it holds {fill.size}")
    ctx.check_size(shape, fill.dtype, "the output")
    return [np.full(shape, fill[0], dtype=fill.dtype)]


@converter("Shape")
def _shape(ctx: NodeContext) -> list[Handle | None]:
    dims = np.asarray(shape_of(ctx.need(0, "data")), dtype=np.int64)
    start, end = ctx.attr("start", 0), ctx.attr("end")
    return [dims[start:end]]


@converter("Size")
def _size(ctx: NodeContext) -> list[Handle | None]:
    return [np.asarray(int(np.prod(shape_of(ctx.need(0, "data")), dtype=np.int64)), dtype=np.int64)]


@converter("Identity")
def _identity(ctx: NodeContext) -> list[Handle | None]:
    return [ctx.need(0, "input")]


@converter("Dropout")
def _dropout(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "data")
    training = ctx.const(2, "training_mode") if ctx.opset >= 12 else None
    ratio = ctx.const(1, "ratio") if ctx.opset >= 12 and ctx.input(1) is not None else None
    if training is not None and bool(training.reshape(-1)[0]) and (ratio is None or float(ratio.reshape(-1)[0])):
        raise UnsupportedError("training_mode=true with a ratio above 0 (random; only inference dropout and a zero "
                               "ratio, which drops nothing)")
    mask_dt = np.bool_ if ctx.opset >= 10 else np_dtype(x)
    return [x, np.ones(shape_of(x), dtype=mask_dt)]


@converter("Cast", "CastLike")
def _cast(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "input")
    if ctx.node.op_type == "CastLike":
        target = np_dtype(ctx.need(1, "target_type"))
    else:
        to = ctx.attr("to")
        target = np.dtype(to.lower()) if isinstance(to, str) else np_dtype_of_onnx(int(to))
    if np_dtype(x) == target:
        return [x]
    if isinstance(x, np.ndarray):
        return [x.astype(target)]
    try:
        name = dtype_from_numpy(target).name
    except ValueError:
        raise UnsupportedError(f"Cast of a run-time value to {target} (no IR dtype)") from None
    return [ctx.op("cast", x, dtype=name)]


@converter("Reshape")
def _reshape(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "data")
    shape = list(ctx.attr("shape")) if ctx.opset < 5 else _ints(ctx.const(1, "shape"))
    if shape is None:
        raise ValueError("input 1 (shape) is required")
    src = shape_of(x)
    if not ctx.attr("allowzero", 0):
        shape = [src[i] if d == 0 else d for i, d in enumerate(shape)]
    return [ctx.reshape(x, shape)]


@converter("Flatten")
def _flatten(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "input")
    r = len(shape_of(x))
    axis = int(ctx.attr("axis", 1))
    if not -r <= axis <= r:
        raise ValueError(f"axis {axis} is out of range for rank {r}")
    return [ctx.op("flatten", x, axis=axis + r if axis < 0 else axis)]


@converter("Transpose")
def _transpose(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "data")
    perm = ctx.attr("perm") or list(range(len(shape_of(x))))[::-1]
    return [ctx.transpose(x, perm)]


@converter("Concat")
def _concat(ctx: NodeContext) -> list[Handle | None]:
    xs = [h for h in ctx.inputs if h is not None]
    axis = ctx.attr("axis", 1)
    if not xs:
        raise ValueError("needs at least one input")
    axis = norm_axis(axis, len(shape_of(xs[0])))
    nonempty = [h for h in xs if shape_of(h)[axis] > 0] if len(shape_of(xs[0])) else xs
    xs = nonempty or xs[:1]
    return [xs[0] if len(xs) == 1 else ctx.op("concat", *xs, axis=axis)]


def onnx_slice_bounds(dim: int, start: int, end: int, step: int) -> tuple[int, int]:
    """ONNX Slice's clamping of (start, end) on an axis of size `dim`, as numpy-safe bounds."""
    if step == 0:
        raise ValueError("slice step must be non-zero")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
        if end == -1:
            end = -dim - 1  # numpy reads -1 as the last element; this means "before index 0"
    return start, end


def slice_handle(ctx: NodeContext, x: Handle, starts: list[int], ends: list[int], axes: list[int],
                 steps: list[int]) -> Handle:
    """`x` sliced with ONNX semantics; a no-op when every axis is taken whole."""
    shape = shape_of(x)
    out_s, out_e, out_a, out_p = [], [], [], []
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        ax = norm_axis(ax, len(shape), "slice axis")
        s, e = onnx_slice_bounds(shape[ax], st, en, sp)
        if sp == 1 and s == 0 and e == shape[ax]:
            continue
        out_s.append(s)
        out_e.append(e)
        out_a.append(ax)
        out_p.append(sp)
    if not out_a:
        return x
    return ctx.op("slice", x, starts=out_s, ends=out_e, axes=out_a, steps=out_p)


@converter("Slice")
def _slice(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "data")
    if ctx.opset < 10:
        starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
        axes, steps = ctx.attr("axes"), None
    else:
        starts, ends = _ints(ctx.const(1, "starts")), _ints(ctx.const(2, "ends"))
        axes, steps = _ints(ctx.const(3, "axes")), _ints(ctx.const(4, "steps"))
        if starts is None or ends is None:
            raise ValueError("inputs 1 and 2 (starts, ends) are required")
    axes = list(axes) if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ValueError("starts, ends, axes and steps must have equal lengths")
    return [slice_handle(ctx, x, starts, ends, axes, steps)]


@converter("Split")
def _split(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "input")
    shape = shape_of(x)
    axis = norm_axis(ctx.attr("axis", 0), len(shape))
    n_out = len(ctx.node.output)
    sizes = _ints(ctx.const(1, "split")) if ctx.opset >= 13 else ctx.attr("split")
    if ctx.opset < 13 and sizes is None and len(ctx.inputs) > 1 and ctx.input(1) is not None:
        sizes = _ints(ctx.const(1, "split"))  # opset 2-12 also accepted split as an input
    dim = shape[axis]
    if not sizes:
        n = int(ctx.attr("num_outputs", n_out))
        chunk = -(-dim // n)
        sizes = [min(chunk, dim - i * chunk) for i in range(n)]
    if sum(sizes) != dim or len(sizes) != n_out:
        raise ValueError(f"split sizes {list(sizes)} do not fit axis {axis} of {describe(x)} into {n_out} outputs")
    outs, start = [], 0
    for s in sizes:
        outs.append(slice_handle(ctx, x, [start], [start + s], [axis], [1]))
        start += s
    return outs


@converter("Gather")
def _gather(ctx: NodeContext) -> list[Handle | None]:
    data, idx = ctx.need(0, "data"), ctx.need(1, "indices")
    if np_dtype(idx).kind not in "iu":
        raise ValueError(f"indices must be integers, got {describe(idx)}")
    axis = norm_axis(ctx.attr("axis", 0), len(shape_of(data)))
    return [ctx.op("gather", data, idx, axis=axis)]


@converter("GatherElements")
def _gather_elements(ctx: NodeContext) -> list[Handle | None]:
    data, idx = ctx.need(0, "data"), ctx.need(1, "indices")
    if np_dtype(idx).kind not in "iu":
        raise ValueError(f"indices must be integers, got {describe(idx)}")
    return [ctx.op("gather-elements", data, idx, axis=norm_axis(ctx.attr("axis", 0), len(shape_of(data))))]


@converter("GatherND")
def _gather_nd(ctx: NodeContext) -> list[Handle | None]:
    data, idx = ctx.need(0, "data"), ctx.need(1, "indices")
    if np_dtype(idx).kind not in "iu":
        raise ValueError(f"indices must be integers, got {describe(idx)}")
    return [ctx.op("gather-nd", data, idx, batch_dims=int(ctx.attr("batch_dims", 0)))]


@converter("ScatterND")
def _scatter_nd(ctx: NodeContext) -> list[Handle | None]:
    data, idx, upd = ctx.need(0, "data"), ctx.need(1, "indices"), ctx.need(2, "updates")
    if np_dtype(idx).kind not in "iu":
        raise ValueError(f"indices must be integers, got {describe(idx)}")
    return [ctx.op("scatter-nd", data, idx, upd, reduction=ctx.attr("reduction", "none"))]


@converter("ScatterElements", "Scatter")
def _scatter_elements(ctx: NodeContext) -> list[Handle | None]:
    data, idx, upd = ctx.need(0, "data"), ctx.need(1, "indices"), ctx.need(2, "updates")
    if np_dtype(idx).kind not in "iu":
        raise ValueError(f"indices must be integers, got {describe(idx)}")
    return [ctx.op("scatter-elements", data, idx, upd, axis=norm_axis(ctx.attr("axis", 0), len(shape_of(data))),
                   reduction=ctx.attr("reduction", "none"))]


def _axes_of(ctx: NodeContext, attr_before: int) -> list[int] | None:
    if ctx.opset < attr_before:
        axes = ctx.attr("axes")
        return None if axes is None else list(axes)
    return _ints(ctx.const(1, "axes"))


@converter("Unsqueeze")
def _unsqueeze(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "data")
    axes = _axes_of(ctx, 13)
    if not axes:
        raise ValueError("axes are required")
    shape = list(shape_of(x))
    r = len(shape) + len(axes)
    norm = sorted(norm_axis(a, r, "unsqueeze axis") for a in axes)
    if len(set(norm)) != len(norm):
        raise ValueError(f"axes {axes} repeat an axis")
    for a in norm:
        shape.insert(a, 1)
    return [ctx.reshape(x, shape)]


@converter("Squeeze")
def _squeeze(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "data")
    shape = shape_of(x)
    axes = _axes_of(ctx, 13)
    if axes is None:
        drop = {i for i, d in enumerate(shape) if d == 1}
    else:
        drop = {norm_axis(a, len(shape), "squeeze axis") for a in axes}
        bad = [a for a in drop if shape[a] != 1]
        if bad:
            raise ValueError(f"cannot squeeze axes {bad} of {describe(x)}: their size is not 1")
    return [ctx.reshape(x, [d for i, d in enumerate(shape) if i not in drop])]


def _repeat_axis(ctx: NodeContext, x: Handle, axis: int, indices: np.ndarray) -> Handle:
    """Gather `indices` along `axis` (exact data movement; used by Expand, Tile and Pad)."""
    if np.array_equal(indices, np.arange(shape_of(x)[axis])):
        return x
    return ctx.op("gather", x, indices.astype(np.int64), axis=axis)


@converter("Expand")
def _expand(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "input")
    target = _ints(ctx.const(1, "shape")) or []
    try:
        out = np.broadcast_shapes(shape_of(x), tuple(target))
    except ValueError:
        raise ValueError(f"{describe(x)} does not broadcast to {target}") from None
    return [broadcast_to(ctx, x, out)]


def broadcast_to(ctx: NodeContext, x: Handle, out: tuple[int, ...]) -> Handle:
    """`x` broadcast to shape `out` (numpy rules) by exact data movement: unit axes are gathered."""
    ctx.check_size(out, np_dtype(x), f"{describe(x)} broadcast")
    if isinstance(x, np.ndarray):
        return np.broadcast_to(x, out).copy()
    y = ctx.reshape(x, (1,) * (len(out) - len(shape_of(x))) + shape_of(x))
    for ax, n in enumerate(out):
        if shape_of(y)[ax] != n:
            y = _repeat_axis(ctx, y, ax, np.zeros(n, np.int64))
    return y


@converter("Tile")
def _tile(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "input")
    reps = _ints(ctx.const(1, "repeats"))
    shape = shape_of(x)
    if reps is None or len(reps) != len(shape) or any(r < 0 for r in reps):
        raise ValueError(f"repeats {reps} must hold {len(shape)} non-negative values")
    ctx.check_size([d * r for d, r in zip(shape, reps)], np_dtype(x), "the output")
    for ax, r in enumerate(reps):
        x = _repeat_axis(ctx, x, ax, np.tile(np.arange(shape[ax]), r))
    return [x]


def constant_pad(ctx: NodeContext, x: Handle, ax: int, lo: int, hi: int, value: object) -> Handle:
    """`x` with lo and hi cells of `value` added before and after it along axis `ax` (lo, hi >= 0)."""
    parts: list[Handle] = []
    for k in (lo, None, hi):
        if k is None:
            parts.append(x)
        elif k:
            blk = list(shape_of(x))
            blk[ax] = k
            parts.append(np.full(blk, value, dtype=np_dtype(x)))
    return ctx.op("concat", *parts, axis=ax) if len(parts) > 1 else x


@converter("CenterCropPad")
def _center_crop_pad(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "input_data")
    r = len(shape_of(x))
    target = _ints(ctx.const(1, "shape"))
    axes = [norm_axis(int(a), r) for a in ctx.attr("axes", range(r))]
    if target is None or len(target) != len(axes) or min(target, default=0) < 0:
        raise ValueError(f"CenterCropPad shape {target} must hold one size >= 0 per axis of {axes}")
    for ax, want in zip(axes, target):
        have = shape_of(x)[ax]
        if want < have:  # the centered window, its odd cell left out at the end
            start = (have - want) // 2
            x = slice_handle(ctx, x, [start], [start + want], [ax], [1])
        elif want > have:  # zeros around it, the odd one at the end
            lo = (want - have) // 2
            x = constant_pad(ctx, x, ax, lo, want - have - lo, 0)
    return [x]


@converter("EyeLike")
def _eye_like(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "input")
    if len(shape_of(x)) != 2:
        raise ValueError(f"EyeLike takes a 2-D input, got {describe(x)}")
    dtype = np_dtype_of_onnx(int(ctx.attr("dtype"))) if ctx.has_attr("dtype") else np_dtype(x)
    return [np.eye(*shape_of(x), k=int(ctx.attr("k", 0)), dtype=dtype)]


@converter("Pad")
def _pad(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "data")
    shape = shape_of(x)
    r = len(shape)
    mode = ctx.attr("mode", "constant")
    if ctx.opset < 11:
        pads, value = list(ctx.attr("pads", ctx.attr("paddings", []))), float(ctx.attr("value", 0.0))
        axes = list(range(r))
    else:
        pads = _ints(ctx.const(1, "pads")) or []
        cval = ctx.const(2, "constant_value")
        value = 0 if cval is None or cval.size == 0 else cval.reshape(-1)[0]
        axes = [norm_axis(a, r) for a in (_ints(ctx.const(3, "axes")) or range(r))]
    if len(pads) != 2 * len(axes):
        raise ValueError(f"pads {pads} must hold 2 values per padded axis ({len(axes)} axes)")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise UnsupportedError(f"Pad mode {mode!r}")
    grown = list(shape)
    for i, ax in enumerate(axes):
        grown[ax] += max(pads[i], 0) + max(pads[i + len(axes)], 0)
    ctx.check_size(grown, np_dtype(x), "the padded output")
    for i, ax in enumerate(axes):
        lo, hi = pads[i], pads[i + len(axes)]
        if lo < 0 or hi < 0:  # negative pads crop
            x = slice_handle(ctx, x, [max(-lo, 0)], [shape_of(x)[ax] - max(-hi, 0)], [ax], [1])
            lo, hi = max(lo, 0), max(hi, 0)
        if not (lo or hi):
            continue
        n = shape_of(x)[ax]
        if mode == "constant":
            x = constant_pad(ctx, x, ax, lo, hi, value)
        else:
            if n == 0 or (mode == "reflect" and n == 1):
                raise ValueError(f"cannot {mode}-pad an axis of size {n}")
            idx = np.pad(np.arange(n), (lo, hi), mode={"edge": "edge", "reflect": "reflect", "wrap": "wrap"}[mode])
            x = _repeat_axis(ctx, x, ax, idx)
    return [x]


@converter("ReverseSequence")
def _reverse_sequence(ctx: NodeContext) -> list[Handle | None]:
    x, lens = ctx.need(0, "input"), ctx.need(1, "sequence_lens")
    shape = shape_of(x)
    time_axis, batch_axis = int(ctx.attr("time_axis", 0)), int(ctx.attr("batch_axis", 1))
    if len(shape) < 2 or {time_axis, batch_axis} != {0, 1}:
        raise ValueError(f"ReverseSequence needs time_axis and batch_axis 0 and 1 of a tensor of rank >= 2, got "
                         f"{time_axis}, {batch_axis} for {describe(x)}")
    steps, batch = shape[time_axis], shape[batch_axis]
    if shape_of(lens) != (batch,):
        raise ValueError(f"sequence_lens {describe(lens)} must be [{batch}]")
    t = np.arange(steps, dtype=np.int64).reshape((steps, 1) if time_axis == 0 else (1, steps))
    n = ctx.reshape(ctx.op("cast", lens, dtype="i64"), [1, batch] if time_axis == 0 else [batch, 1])
    # the first lens[b] steps of row b reversed, the rest in place
    index = ctx.op("where", ctx.op("less", t, n), ctx.op("sub", ctx.op("sub", n, np.asarray(1, np.int64)), t), t)
    index = ctx.reshape(index, list(shape[:2]) + [1] * (len(shape) - 2))
    return [ctx.op("gather-elements", x, broadcast_to(ctx, index, shape), axis=time_axis)]
