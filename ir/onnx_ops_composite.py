"""ONNX operators imported as short compositions of IR ops (each as ONNX's own function body defines it).

RMSNormalization (x times the reciprocal root mean square over the axes from `axis`, times scale, in float32
for half inputs as stash_type 1 says), ReduceLogSumExp (stabilized by the maximum: m + log(sum(exp(x - m)))),
ReduceLogSum, LpNormalization (p = 1 or 2 along one axis; a zero vector stays zero), Hardmax (one-hot of the
first maximum along an axis), OneHot (indices compared with a constant range, picking the on / off values) and
RotaryEmbedding (the halves, or the even and odd channels, of each head rotated by cos / sin gathered by position)
and LpPool (window sums of |x|^p as depthwise convolutions with ones, then the p-th root).
The compositions fuse like any other chain of the same ops.
"""

from __future__ import annotations

import numpy as np

from .dtypes import dtype_from_numpy
from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, norm_axis, np_dtype, shape_of
from .onnx_ops_math import reduce_axes
from .onnx_ops_nn import window_attrs
from .ops.nn import conv_out


def _in_f32(ctx: NodeContext, x: Handle) -> tuple[Handle, str | None]:
    """x in float32 (cast when half precision) and the IR dtype to cast the result back to (None: none)."""
    name = np_dtype(x).name
    if name in ("float16", "bfloat16"):
        return ctx.op("cast", x, dtype="f32"), "f16" if name == "float16" else "bf16"
    return x, None


@converter("RMSNormalization")
def _rms_normalization(ctx: NodeContext) -> list[Handle | None]:
    x, scale = ctx.need(0, "X"), ctx.need(1, "scale")
    rank = len(shape_of(x))
    axis = norm_axis(ctx.attr("axis", -1), rank)
    xf, back = _in_f32(ctx, x)
    sf = ctx.op("cast", scale, dtype="f32") if back is not None else scale
    mean_square = ctx.op("reduce-mean", ctx.op("mul", xf, xf), axes=list(range(axis, rank)), keepdims=True)
    rms = ctx.op("sqrt", ctx.op("add", mean_square, ctx.scalar(float(ctx.attr("epsilon", 1e-5)), xf)))
    y = ctx.op("mul", ctx.op("mul", xf, ctx.op("div", ctx.scalar(1.0, xf), rms)), sf)
    return [ctx.op("cast", y, dtype=back) if back is not None else y]


def _log_sum_operands(ctx: NodeContext) -> tuple[Handle, list[int] | None, bool, np.ndarray | None]:
    """(data, reduction axes or None for none, keepdims, the -inf result of an empty reduction or None)."""
    x = ctx.need(0, "data")
    if not np_dtype(x).kind == "f":
        raise UnsupportedError(f"{ctx.node.op_type} of {describe(x)}: floating point only")
    axes = reduce_axes(ctx, x, 18)
    keep = bool(ctx.attr("keepdims", 1))
    if axes is None or not any(shape_of(x)[a] == 0 for a in axes):
        return x, axes, keep, None
    shape = [1 if i in axes else d for i, d in enumerate(shape_of(x)) if keep or i not in axes]
    return x, axes, keep, np.full(shape, -np.inf, np_dtype(x))  # the log of an empty sum


@converter("ReduceLogSumExp")
def _reduce_log_sum_exp(ctx: NodeContext) -> list[Handle | None]:
    x, axes, keep, empty = _log_sum_operands(ctx)
    if axes is None or empty is not None:
        return [x if axes is None else empty]
    m = ctx.op("reduce-max", x, axes=axes, keepdims=True)
    total = ctx.op("reduce-sum", ctx.op("exp", ctx.op("sub", x, m)), axes=axes, keepdims=keep)
    m_out = m if keep else ctx.reshape(m, shape_of(total))
    return [ctx.op("add", ctx.op("log", total), m_out)]


@converter("ReduceLogSum")
def _reduce_log_sum(ctx: NodeContext) -> list[Handle | None]:
    x, axes, keep, empty = _log_sum_operands(ctx)
    if empty is not None:
        return [empty]
    return [ctx.op("log", x if axes is None else ctx.op("reduce-sum", x, axes=axes, keepdims=keep))]


@converter("LpNormalization")
def _lp_normalization(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "input")
    p, axis = int(ctx.attr("p", 2)), norm_axis(ctx.attr("axis", -1), len(shape_of(x)))
    if p not in (1, 2):
        raise UnsupportedError(f"LpNormalization with p={p}: ONNX defines p = 1 or 2")
    if p == 1:
        norm = ctx.op("reduce-sum", ctx.op("abs", x), axes=[axis], keepdims=True)
    else:
        norm = ctx.op("sqrt", ctx.op("reduce-sum", ctx.op("mul", x, x), axes=[axis], keepdims=True))
    zero = ctx.op("equal", norm, ctx.scalar(0.0, x))  # an all-zero vector stays zero (ONNX Runtime), not NaN
    return [ctx.op("div", x, ctx.op("where", zero, ctx.scalar(1.0, x), norm))]


def _index_range(n: int, axis: int, rank: int) -> np.ndarray:
    """0..n-1 as int64, shaped to lie along `axis` of a rank-`rank` tensor."""
    shape = [1] * rank
    shape[axis] = n
    return np.arange(n, dtype=np.int64).reshape(shape)


@converter("Hardmax")
def _hardmax(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "input")
    rank = len(shape_of(x))
    axis = norm_axis(ctx.attr("axis", -1 if ctx.opset >= 13 else 1), rank)
    if ctx.opset < 13:
        raise UnsupportedError("Hardmax before opset 13 (over the flattened trailing axes)")
    first = ctx.op("argmax", x, axis=axis, keepdims=True)
    hot = ctx.op("equal", first, _index_range(shape_of(x)[axis], axis, rank))
    return [ctx.op("cast", hot, dtype=dtype_from_numpy(np_dtype(x)).name)]


@converter("OneHot")
def _one_hot(ctx: NodeContext) -> list[Handle | None]:
    indices, depth, values = ctx.need(0, "indices"), ctx.const(1, "depth"), ctx.need(2, "values")
    if depth is None:
        raise UnsupportedError("OneHot with a depth computed at run time: the output shape is static here")
    n = int(np.asarray(depth).reshape(-1)[0])
    rank = len(shape_of(indices)) + 1
    axis = norm_axis(ctx.attr("axis", -1), rank)
    idx = ctx.op("cast", indices, dtype="i64") if np_dtype(indices) != np.dtype(np.int64) else indices
    negative = ctx.op("less", idx, np.array(0, np.int64))
    idx = ctx.op("where", negative, ctx.op("add", idx, np.array(n, np.int64)), idx)  # -1 is n - 1
    lead = list(shape_of(indices))
    idx = ctx.reshape(idx, lead[:axis] + [1] + lead[axis:])
    hot = ctx.op("equal", idx, _index_range(n, axis, rank))
    if not isinstance(values, np.ndarray) or values.size != 2:
        raise UnsupportedError(f"OneHot values {describe(values)}: a constant [off, on] pair")
    off, on = (values.reshape(-1)[i:i + 1].reshape(()) for i in (0, 1))
    return [ctx.op("where", hot, on, off)]


@converter("RotaryEmbedding")
def _rotary_embedding(ctx: NodeContext) -> list[Handle | None]:
    """x [B, heads, S, D] (or [B, S, heads * D] with num_heads) rotated by angle pairs: the first
    rotary_embedding_dim channels of each head as halves (or, interleaved, as even / odd channels) x1, x2 ->
    (cos x1 - sin x2, sin x1 + cos x2), cos / sin [B, S, dim / 2] or rows of caches picked by position_ids."""
    x, cos, sin = ctx.need(0, "X"), ctx.need(1, "cos_cache"), ctx.need(2, "sin_cache")
    positions = ctx.input(3)
    shape = shape_of(x)
    heads = int(ctx.attr("num_heads", 0))
    if len(shape) == 4:
        b, h, s, d = shape
        xs = ctx.transpose(x, [0, 2, 1, 3])  # [B, S, heads, D]
    elif len(shape) == 3:
        if heads <= 0 or shape[2] % heads:
            raise UnsupportedError(f"RotaryEmbedding of 3-D {describe(x)} needs num_heads dividing {shape[2]}, "
                                   f"got {heads}")
        b, s, h, d = shape[0], shape[1], heads, shape[2] // heads
        xs = ctx.reshape(x, [b, s, h, d])
    else:
        raise UnsupportedError(f"RotaryEmbedding of {describe(x)}: input of rank 3 or 4 only")
    rot = int(ctx.attr("rotary_embedding_dim", 0)) or d
    if rot % 2 or rot > d:
        raise UnsupportedError(f"RotaryEmbedding: rotary_embedding_dim {rot} must be even and at most the head "
                               f"size {d}")
    half = rot // 2
    xs, back = _in_f32(ctx, xs)
    angles = []
    for cache in (cos, sin):
        if positions is not None:
            cache = ctx.op("gather", cache, positions, axis=0)
        if tuple(shape_of(cache)) != (b, s, half):
            raise UnsupportedError(f"RotaryEmbedding: cos / sin {describe(cache)} (after position_ids) must be "
                                   f"[{b}, {s}, {half}]")
        cache, _ = _in_f32(ctx, cache)
        angles.append(ctx.reshape(cache, [b, s, 1, half]))
    c, sn = angles
    part = ctx.op("slice", xs, starts=[0], ends=[rot], axes=[3], steps=[1]) if rot < d else xs
    step, second = (2, 1) if ctx.attr("interleaved", 0) else (1, half)
    x1 = ctx.op("slice", part, starts=[0], ends=[rot if step == 2 else half], axes=[3], steps=[step])
    x2 = ctx.op("slice", part, starts=[second], ends=[rot], axes=[3], steps=[step])
    real = ctx.op("sub", ctx.op("mul", c, x1), ctx.op("mul", sn, x2))
    imag = ctx.op("add", ctx.op("mul", sn, x1), ctx.op("mul", c, x2))
    if step == 2:  # back to even / odd channels: pairs side by side, then one axis again
        pairs = ctx.op("concat", ctx.reshape(real, [b, s, h, half, 1]), ctx.reshape(imag, [b, s, h, half, 1]), axis=4)
        rotated = ctx.reshape(pairs, [b, s, h, rot])
    else:
        rotated = ctx.op("concat", real, imag, axis=3)
    if rot < d:
        rotated = ctx.op("concat", rotated, ctx.op("slice", xs, starts=[rot], ends=[d], axes=[3], steps=[1]), axis=3)
    if back is not None:
        rotated = ctx.op("cast", rotated, dtype=back)
    return [ctx.transpose(rotated, [0, 2, 1, 3]) if len(shape) == 4 else ctx.reshape(rotated, shape)]


def _window_sums(ctx: NodeContext, x: Handle, kernel: list[int], strides: list[int], pads: list[int],
                 dil: list[int], ceil: bool) -> Handle:
    """Sums over 2-D windows of x [N, C, H, W] (pads as zeros; a ceil_mode window past the edge sees zeros there
    too): a depthwise convolution with ones, its end pads widened to cover the last window."""
    n, c, h, w = shape_of(x)
    size = (h, w)
    outs = [conv_out(size[i], kernel[i], strides[i], pads[i], pads[i + 2], dil[i], ceil) for i in range(2)]
    ends = [max(pads[i + 2], (outs[i] - 1) * strides[i] + dil[i] * (kernel[i] - 1) + 1 - size[i] - pads[i])
            for i in range(2)]
    ones = np.ones((c, 1, kernel[0], kernel[1]), np.float32)
    return ctx.op("conv2d", x, ones, pads=[pads[0], pads[1], ends[0], ends[1]], strides=strides, dilations=dil,
                  groups=c)


@converter("LpPool")
def _lp_pool(ctx: NodeContext) -> list[Handle | None]:
    """(sum over each window of |x|^p)^(1/p): 1, 2 or 3 spatial axes, the sums as depthwise convolutions with ones
    (3-D windows as a 2-D one over height and width, then one over depth)."""
    x = ctx.need(0, "X")
    xs = shape_of(x)
    r = len(xs) - 2
    if r not in (1, 2, 3):
        raise UnsupportedError(f"LpPool of {describe(x)}: 1, 2 or 3 spatial axes only")
    p = float(ctx.attr("p", 2))
    if p <= 0:
        raise UnsupportedError(f"LpPool with p={p}: p must be positive")
    kernel = list(ctx.attr("kernel_shape"))
    if len(kernel) != r:
        raise UnsupportedError(f"LpPool: kernel_shape {kernel} does not fit {describe(x)}")
    strides, dil, pads = window_attrs(ctx, xs[2:], tuple(kernel), dil_default=ctx.opset >= 18)
    ceil = bool(ctx.attr("ceil_mode", 0))
    xf, back = _in_f32(ctx, x)
    powered = ctx.op("abs", xf) if p == 1.0 else ctx.op("mul", xf, xf) if p == 2.0 else \
        ctx.op("pow", ctx.op("abs", xf), ctx.scalar(p, xf))
    if r == 1:  # one spatial axis as a row of a 2-D window
        sums = _window_sums(ctx, ctx.reshape(powered, (xs[0], xs[1], 1, xs[2])), [1, kernel[0]], [1, strides[0]],
                            [0, pads[0], 0, pads[1]], [1, dil[0]], ceil)
        sums = ctx.reshape(sums, (xs[0], xs[1], shape_of(sums)[3]))
    elif r == 2:
        sums = _window_sums(ctx, powered, kernel, strides, pads, dil, ceil)
    else:
        n, c, d, h, w = xs
        plane = _window_sums(ctx, ctx.reshape(powered, (n, c * d, h, w)), kernel[1:], strides[1:],
                             [pads[1], pads[2], pads[4], pads[5]], dil[1:], ceil)
        ho, wo = shape_of(plane)[2:]
        sums = _window_sums(ctx, ctx.reshape(plane, (n, c, d, ho * wo)), [kernel[0], 1], [strides[0], 1],
                            [pads[0], 0, pads[3], 0], [dil[0], 1], ceil)
        sums = ctx.reshape(sums, (n, c, shape_of(sums)[2], ho, wo))
    y = sums if p == 1.0 else ctx.op("sqrt", sums) if p == 2.0 else ctx.op("pow", sums, ctx.scalar(1.0 / p, sums))
    return [ctx.op("cast", y, dtype=back) if back is not None else y]
