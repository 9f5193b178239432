"""ONNX converters for Gemm, MatMul, convolutions, pooling and normalizations.

The IR has 2-D convolution and pooling only: 1-D windows become 2-D ones over a unit axis,
3-D convolution becomes a sum of 2-D convolutions over the depth taps (depth folded into the
batch), 3-D pooling runs as two separable 2-D poolings (max and average factor per axis),
and ConvTranspose becomes a convolution over the zero-interleaved input with the flipped kernel.
"""

from __future__ import annotations

import numpy as np

from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, norm_axis, shape_of
from .onnx_ops_math import match_dtype
from .onnx_ops_unpool import max_pool_indices


@converter("MatMul")
def _matmul(ctx: NodeContext) -> list[Handle | None]:
    return [matmul(ctx, ctx.need(0, "A"), ctx.need(1, "B"))]


def matmul(ctx: NodeContext, a: Handle, b: Handle) -> Handle:
    """a @ b; a constant 2-D `b` becomes the weight of a linear op (x @ B == linear(x, B^T))."""
    if isinstance(b, np.ndarray) and b.ndim == 2 and not isinstance(a, np.ndarray):
        return ctx.op("linear", a, ctx.derived(np.ascontiguousarray(b.T), b, ".T"))
    return ctx.op("matmul", a, b)


@converter("Gemm")
def _gemm(ctx: NodeContext) -> list[Handle | None]:
    a, b, c = ctx.need(0, "A"), ctx.need(1, "B"), ctx.input(2)
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    if ctx.attr("transA", 0):
        a = ctx.transpose(a, [1, 0])
    if len(shape_of(a)) != 2 or len(shape_of(b)) != 2:
        raise ValueError(f"A and B must be 2-D, got {describe(a)} and {describe(b)}")
    trans_b = bool(ctx.attr("transB", 0))
    n = shape_of(b)[0] if trans_b else shape_of(b)[1]
    if beta == 0.0:
        c = None
    bias = None
    if isinstance(c, np.ndarray) and alpha == 1.0 and beta == 1.0 and c.ndim <= 2 and c.size in (1, n) \
            and (c.ndim < 2 or c.shape[0] == 1):
        bias = c if c.shape == (n,) else ctx.derived(np.broadcast_to(c.reshape(-1), (n,)).copy(), c)
        c = None
    as_linear = isinstance(b, np.ndarray) or trans_b  # a computed B^T (e.g. DequantizeLinear's) is a linear weight
    if as_linear and bias is None and c is not None and alpha == 1.0 and beta == 1.0 and shape_of(c) == (n,):
        bias, c = c, None  # a computed bias (e.g. DequantizeLinear of an int32 bias) stays the linear's
    if as_linear:
        w = b if trans_b else ctx.derived(np.ascontiguousarray(b.T), b, ".T")  # type: ignore[union-attr]
        y = ctx.op("linear", a, w) if bias is None else ctx.op("linear", a, w, bias)
    else:
        y = ctx.op("matmul", a, b)
        if bias is not None:
            y = ctx.op("add", y, bias)
    if alpha != 1.0:
        y = ctx.op("mul", y, ctx.scalar(alpha, y))
    if c is not None:
        y = ctx.op("add", y, c if beta == 1.0 else ctx.op("mul", c, ctx.scalar(beta, c)))
    return [y]


def window_attrs(ctx: NodeContext, spatial: tuple[int, ...], kernel: tuple[int, ...],
                 dil_default: bool = True) -> tuple[list[int], list[int], list[int]]:
    """Strides, dilations and explicit pads [begins..., ends...] after resolving auto_pad."""
    r = len(spatial)
    strides = list(ctx.attr("strides", [1] * r))
    dil = list(ctx.attr("dilations", [1] * r)) if dil_default else [1] * r
    pads = list(ctx.attr("pads", [0] * (2 * r)))
    if len(strides) != r or len(dil) != r or len(pads) != 2 * r:
        raise ValueError(f"strides {strides}, dilations {dil} and pads {pads} do not fit {r} spatial axes")
    auto = ctx.attr("auto_pad", "NOTSET")
    if auto == "VALID":
        pads = [0] * (2 * r)
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        for i in range(r):
            out = -(-spatial[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - spatial[i])
            small, big = total // 2, total - total // 2
            pads[i], pads[i + r] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto != "NOTSET":
        raise ValueError(f"unknown auto_pad {auto!r}")
    return strides, dil, pads


def conv_kernel(ctx: NodeContext, w: Handle) -> tuple[int, ...]:
    """The spatial kernel shape of a Conv-like node: its weight's, checked against `kernel_shape` if given."""
    k = tuple(ctx.attr("kernel_shape", shape_of(w)[2:]))
    if k != shape_of(w)[2:]:
        raise ValueError(f"kernel_shape {list(k)} does not match weight {describe(w)}")
    return k


@converter("Conv")
def _conv(ctx: NodeContext) -> list[Handle | None]:
    return [conv(ctx, ctx.need(0, "X"), ctx.need(1, "W"), ctx.input(2))]


def conv(ctx: NodeContext, x: Handle, w: Handle, b: Handle | None) -> Handle:
    """An ONNX Conv (attributes from the node) of `x` with weight `w` and optional bias `b`."""
    xs = shape_of(x)
    kernel = conv_kernel(ctx, w)
    strides, dil, pads = window_attrs(ctx, xs[2:], kernel)
    g = int(ctx.attr("group", 1))
    r = len(xs) - 2
    bias = () if b is None else (b,)
    if r == 2:
        return ctx.op("conv2d", x, w, *bias, strides=strides, pads=pads, dilations=dil, groups=g)
    if r == 1:
        x4 = ctx.reshape(x, xs[:2] + (1, xs[2]))
        w4 = ctx.reshape(w, shape_of(w)[:2] + (1, kernel[0]))
        y = ctx.op("conv2d", x4, w4, *bias, strides=[1, strides[0]], pads=[0, pads[0], 0, pads[1]],
                   dilations=[1, dil[0]], groups=g)
        ys = shape_of(y)
        return ctx.reshape(y, ys[:2] + (ys[3],))
    if r == 3:
        return _conv3d(ctx, x, w, b, strides, dil, pads, g)
    raise UnsupportedError(f"Conv with {r} spatial axes (1, 2 and 3 are supported)")


def _zeros(ctx: NodeContext, shape: tuple[int, ...], like: Handle) -> np.ndarray:
    from .onnx_context import np_dtype

    return np.zeros(shape, np_dtype(like))


def _conv3d(ctx: NodeContext, x: Handle, w: Handle, b: Handle | None, strides: list[int], dil: list[int],
            pads: list[int], g: int) -> Handle:
    """3-D convolution as the sum over depth taps of 2-D convolutions with depth folded into batch."""
    n, c, d, h, wd = shape_of(x)
    co, _, kd, _, _ = shape_of(w)
    if pads[0] or pads[3]:
        parts = [p for p in (_zeros(ctx, (n, c, pads[0], h, wd), x), x, _zeros(ctx, (n, c, pads[3], h, wd), x))
                 if shape_of(p)[2]]
        x = ctx.op("concat", *parts, axis=2)
        d += pads[0] + pads[3]
    span = dil[0] * (kd - 1) + 1
    if d < span:
        raise ValueError(f"kernel depth {kd} (dilation {dil[0]}) does not fit padded depth {d}")
    do = (d - span) // strides[0] + 1
    xf = ctx.reshape(ctx.transpose(x, [0, 2, 1, 3, 4]), (n * d, c, h, wd))
    acc: Handle | None = None
    for k in range(kd):
        wk = ctx.reshape(ctx.op("slice", w, starts=[k], ends=[k + 1], axes=[2], steps=[1]),
                         shape_of(w)[:2] + shape_of(w)[3:])
        y = ctx.op("conv2d", xf, wk, strides=strides[1:], pads=[pads[1], pads[2], pads[4], pads[5]],
                   dilations=dil[1:], groups=g)
        ho, wo = shape_of(y)[2:]
        y = ctx.reshape(y, (n, d, co, ho, wo))
        start = k * dil[0]
        y = ctx.op("slice", y, starts=[start], ends=[start + (do - 1) * strides[0] + 1], axes=[1],
                   steps=[strides[0]])
        acc = y if acc is None else ctx.op("add", acc, y)
    assert acc is not None
    if b is not None:
        acc = ctx.op("add", acc, ctx.reshape(b, (co, 1, 1)))
    return ctx.transpose(acc, [0, 2, 1, 3, 4])


@converter("ConvTranspose")
def _conv_transpose(ctx: NodeContext) -> list[Handle | None]:
    x, w, b = ctx.need(0, "X"), ctx.need(1, "W"), ctx.input(2)
    xs, ws = shape_of(x), shape_of(w)
    r = len(xs) - 2
    if r == 1:
        x = ctx.reshape(x, xs[:2] + (1, xs[2]))
        w = ctx.reshape(w, ws[:2] + (1, ws[2]))
        y = _conv_transpose2d(ctx, x, w, b, lift=True)
        ys = shape_of(y)
        return [ctx.reshape(y, ys[:2] + (ys[3],))]
    if r != 2:
        raise UnsupportedError(f"ConvTranspose with {r} spatial axes (1 and 2 are supported)")
    return [_conv_transpose2d(ctx, x, w, b, lift=False)]


def _lifted(ctx: NodeContext, name: str, default: int, lift: bool, pads: bool = False) -> list[int]:
    """A per-axis attribute, with a unit leading axis added for 1-D inputs."""
    v = list(ctx.attr(name, [default] * (2 if lift or not pads else 4)))
    if not lift:
        return v
    return [default, v[0], default, v[1]] if pads else [default, v[0]]


def _conv_transpose2d(ctx: NodeContext, x: Handle, w: Handle, b: Handle | None, lift: bool) -> Handle:
    n, ci, h, wd = shape_of(x)
    _, cog, kh, kw = shape_of(w)
    g = int(ctx.attr("group", 1))
    strides = _lifted(ctx, "strides", 1, lift)
    dil = _lifted(ctx, "dilations", 1, lift)
    out_pad = _lifted(ctx, "output_padding", 0, lift)
    pads = _lifted(ctx, "pads", 0, lift, pads=True)
    k = (kh, kw)
    full = [(s - 1) * st + (kk - 1) * d + 1 for s, st, kk, d in zip((h, wd), strides, k, dil)]
    auto = ctx.attr("auto_pad", "NOTSET")
    out_shape = ctx.attr("output_shape")
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        if out_shape is None:
            out_shape = [s * st for s, st in zip((h, wd), strides)]
        out_shape = list(out_shape)[-2:] if not lift else [1, list(out_shape)[-1]]
        for i in range(2):
            total = full[i] + out_pad[i] - out_shape[i]
            small, big = total // 2, total - total // 2
            pads[i], pads[i + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    # 1) interleave zeros: x [N, C, H, W] -> [N, C, (H-1)*sh+1, (W-1)*sw+1]
    sh, sw = strides
    if sh > 1 or sw > 1:
        u = ctx.reshape(x, (n, ci, h, 1, wd, 1))
        if sh > 1:
            u = ctx.op("concat", u, _zeros(ctx, (n, ci, h, sh - 1, wd, 1), x), axis=3)
        if sw > 1:
            u = ctx.op("concat", u, _zeros(ctx, (n, ci, h, sh, wd, sw - 1), x), axis=5)
        u = ctx.reshape(u, (n, ci, h * sh, wd * sw))
        x = ctx.op("slice", u, starts=[0, 0], ends=[(h - 1) * sh + 1, (wd - 1) * sw + 1], axes=[2, 3], steps=[1, 1])
    # 2) weight [Ci, Co/g, kh, kw] -> [Co, Ci/g, kh, kw], spatially flipped
    wt = ctx.reshape(w, (g, ci // g, cog, kh, kw))
    wt = ctx.reshape(ctx.transpose(wt, [0, 2, 1, 3, 4]), (g * cog, ci // g, kh, kw))
    wt = ctx.op("slice", wt, starts=[kh - 1, kw - 1], ends=[-kh - 1, -kw - 1], axes=[2, 3], steps=[-1, -1])
    # 3) pads of the equivalent convolution; negative ones crop the result instead
    conv_pads, crop = [], []
    for i, (kk, d) in enumerate(zip(k, dil)):
        lo, hi = d * (kk - 1) - pads[i], d * (kk - 1) - pads[i + 2] + out_pad[i]
        conv_pads.append((max(lo, 0), max(hi, 0)))
        crop.append((max(-lo, 0), max(-hi, 0)))
    bias = () if b is None else (b,)
    y = ctx.op("conv2d", x, wt, *bias, strides=[1, 1], dilations=dil, groups=g,
               pads=[conv_pads[0][0], conv_pads[1][0], conv_pads[0][1], conv_pads[1][1]])
    if any(c for pair in crop for c in pair):
        ys = shape_of(y)
        y = ctx.op("slice", y, starts=[crop[0][0], crop[1][0]], ends=[ys[2] - crop[0][1], ys[3] - crop[1][1]],
                   axes=[2, 3], steps=[1, 1])
    return y


def _pool2d(ctx: NodeContext, op: str, x: Handle, kernel: list[int], strides: list[int], pads: list[int],
            dil: list[int], ceil: bool, cip: bool) -> Handle:
    extra = {"count_include_pad": cip} if op == "avgpool2d" else {}
    return ctx.op(op, x, kernel=kernel, strides=strides, pads=pads, dilations=dil, ceil_mode=ceil, **extra)


@converter("MaxPool", "AveragePool")
def _pool(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "X")
    xs = shape_of(x)
    r = len(xs) - 2
    op = "maxpool2d" if ctx.node.op_type == "MaxPool" else "avgpool2d"
    kernel = list(ctx.attr("kernel_shape"))
    if len(kernel) != r:
        raise ValueError(f"kernel_shape {kernel} does not fit input {describe(x)}")
    dil_ok = op == "maxpool2d" and ctx.opset >= 10 or op == "avgpool2d" and ctx.opset >= 19
    strides, dil, pads = window_attrs(ctx, xs[2:], tuple(kernel), dil_default=dil_ok)
    ceil = bool(ctx.attr("ceil_mode", 0))
    cip = bool(ctx.attr("count_include_pad", 0))
    if r == 2:
        y = _pool2d(ctx, op, x, kernel, strides, pads, dil, ceil, cip)
    elif r == 1:
        y = _pool2d(ctx, op, ctx.reshape(x, xs[:2] + (1, xs[2])), [1, kernel[0]], [1, strides[0]],
                    [0, pads[0], 0, pads[1]], [1, dil[0]], ceil, cip)
        y = ctx.reshape(y, xs[:2] + (shape_of(y)[3],))
    elif r == 3:
        n, c, d, h, w = xs
        y = _pool2d(ctx, op, ctx.reshape(x, (n, c * d, h, w)), kernel[1:], strides[1:],
                    [pads[1], pads[2], pads[4], pads[5]], dil[1:], ceil, cip)
        ho, wo = shape_of(y)[2:]
        y = _pool2d(ctx, op, ctx.reshape(y, (n, c, d, ho * wo)), [kernel[0], 1], [strides[0], 1],
                    [pads[0], 0, pads[3], 0], [dil[0], 1], ceil, cip)
        y = ctx.reshape(y, (n, c, shape_of(y)[2], ho, wo))
    else:
        raise UnsupportedError(f"{ctx.node.op_type} with {r} spatial axes (1, 2 and 3 are supported)")
    if len(ctx.node.output) > 1 and ctx.node.output[1]:  # MaxPool's Indices, when the graph reads them
        return [y, max_pool_indices(ctx, x, tuple(shape_of(y)[2:]), kernel, strides, pads, dil)]
    return [y, None]


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "X")
    if ctx.node.op_type == "GlobalAveragePool":
        return [ctx.op("global-avgpool", x)]
    return [ctx.op("reduce-max", x, axes=list(range(2, len(shape_of(x)))), keepdims=True)]


@converter("BatchNormalization")
def _batchnorm(ctx: NodeContext) -> list[Handle | None]:
    x = ctx.need(0, "X")
    if ctx.opset >= 14 and ctx.attr("training_mode", 0):
        raise UnsupportedError("training_mode=1 (only inference batch normalization)")
    if ctx.opset < 9 and not ctx.attr("spatial", 1):
        raise UnsupportedError("spatial=0 (per-activation statistics)")
    params = [match_dtype(ctx, ctx.need(i, nm), x) for i, nm in enumerate(("scale", "B", "mean", "var"), 1)]
    y = ctx.op("batchnorm", x, *params, epsilon=float(ctx.attr("epsilon", 1e-5)))
    return [y] + [None] * (len(ctx.node.output) - 1)


@converter("LayerNormalization")
def _layernorm(ctx: NodeContext) -> list[Handle | None]:
    x, scale, bias = ctx.need(0, "X"), ctx.need(1, "Scale"), ctx.input(2)
    xs = shape_of(x)
    axis = norm_axis(ctx.attr("axis", -1), len(xs))
    eps = float(ctx.attr("epsilon", 1e-5))
    norm_shape = xs[axis:]
    fused: list[Handle] = []
    later: list[tuple[str, Handle]] = []
    for h, op in ((scale, "mul"), (bias, "add")):
        if h is None:
            break
        if shape_of(h) == norm_shape and not later:
            fused.append(h)
        elif isinstance(h, np.ndarray) and not later:
            fused.append(np.broadcast_to(h, norm_shape).copy())
        else:
            later.append((op, h))
    y = ctx.op("layernorm", x, *fused, axis=axis, epsilon=eps)
    for op, h in later:
        y = ctx.op(op, y, h)
    if len(ctx.node.output) == 1:
        return [y]
    axes = list(range(axis, len(xs)))  # Mean and InvStdDev (only kept when something reads them)
    mean = ctx.op("reduce-mean", x, axes=axes, keepdims=True)
    d = ctx.op("sub", x, mean)
    var = ctx.op("reduce-mean", ctx.op("mul", d, d), axes=axes, keepdims=True)
    inv = ctx.op("div", ctx.scalar(1.0, x), ctx.op("sqrt", ctx.op("add", var, ctx.scalar(eps, x))))
    return [y, mean, inv]


@converter("LRN")
def _lrn(ctx: NodeContext) -> list[Handle | None]:
    return [ctx.op("lrn", ctx.need(0, "X"), size=int(ctx.attr("size")), alpha=float(ctx.attr("alpha", 1e-4)),
                   beta=float(ctx.attr("beta", 0.75)), bias=float(ctx.attr("bias", 1.0)))]
