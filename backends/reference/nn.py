"""Reference semantics of neural-network ops (numpy; the golden truth)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...ir.graph import Node
from ...ir.ops.attention import attention_scale, causal_mask
from .elementwise import compute_dtype, out_dtype

Arrays = list[np.ndarray]


def _gemm_dtype(x: np.ndarray) -> np.dtype:
    """Integer products accumulate exactly in int64 (then narrow to the declared i32)."""
    return np.dtype(np.int64) if x.dtype.kind in "iu" else compute_dtype(x)


def _linear(node: Node, xs: Arrays) -> np.ndarray:
    x, w = xs[0], xs[1]
    dt = _gemm_dtype(x)
    lead = x.shape[:-1]  # one 2-D GEMM over all leading axes: numpy's batched matmul is ~3x slower
    rows = int(np.prod(lead, dtype=np.int64))  # not -1: ambiguous when K == 0
    y = (x.reshape(rows, x.shape[-1]).astype(dt, copy=False) @ w.astype(dt, copy=False).T).reshape(lead + (w.shape[0],))
    if len(xs) == 3:
        y = y + xs[2].astype(dt, copy=False)
    return y.astype(out_dtype(node), copy=False)


def _matmul(node: Node, xs: Arrays) -> np.ndarray:
    a, b = xs
    dt = _gemm_dtype(a)
    return np.matmul(a.astype(dt, copy=False), b.astype(dt, copy=False)).astype(out_dtype(node), copy=False)


def windows(x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int],
            dilations: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """View of x [N, C, H, W] as [N, C, Ho, Wo, kh, kw] windows (x already padded)."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, strides, dilations, out_hw
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    v = sliding_window_view(x, span, axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    return v[:, :, :ho, :wo]


def _pad_to(x: np.ndarray, pads: tuple[int, ...], need_hw: tuple[int, int], value: float) -> np.ndarray:
    """Pad [top, left, bottom, right] and further at the bottom/right up to `need_hw`."""
    pt, pl, pb, pr = pads
    extra_h = max(0, need_hw[0] - (x.shape[2] + pt + pb))
    extra_w = max(0, need_hw[1] - (x.shape[3] + pl + pr))
    return np.pad(x, ((0, 0), (0, 0), (pt, pb + extra_h), (pl, pr + extra_w)), constant_values=value)


def _conv2d(node: Node, xs: Arrays) -> np.ndarray:
    x, w = xs[0], xs[1]
    dt = _gemm_dtype(x)
    if dt.kind == "f":  # accumulate in float64 like the other reductions here: the result does not
        dt = np.dtype(np.float64)  # depend on where an output channel falls in the GEMM's blocking
    x, w = x.astype(dt, copy=False), w.astype(dt, copy=False)
    a = node.attrs
    n, c, _, _ = x.shape
    co, cg, kh, kw = w.shape
    g = a["groups"]
    ho, wo = node.outputs[0].type.shape[2:]
    xp = _pad_to(x, a["pads"], (0, 0), 0.0)
    win = windows(xp, (kh, kw), a["strides"], a["dilations"], (ho, wo))  # N C Ho Wo kh kw
    if g == 1:
        y = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))  # N Ho Wo Co
        y = y.transpose(0, 3, 1, 2)
    elif cg == 1 and co == g:  # depthwise
        y = np.einsum("nchwij,cij->nchw", win, w[:, 0], optimize=True)
    else:
        wg = w.reshape(g, co // g, cg, kh, kw)
        parts = []
        for gi in range(g):
            wi = win[:, gi * cg : (gi + 1) * cg]
            parts.append(np.tensordot(wi, wg[gi], axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2))
        y = np.concatenate(parts, axis=1)
    if len(xs) == 3:
        y = y + xs[2].astype(dt).reshape(1, co, 1, 1)
    return np.ascontiguousarray(y).astype(out_dtype(node), copy=False)


def _pool_geometry(node: Node, x: np.ndarray) -> tuple:
    a = node.attrs
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["strides"], a["dilations"]
    ho, wo = node.outputs[0].type.shape[2:]
    need = ((ho - 1) * sh + dh * (kh - 1) + 1, (wo - 1) * sw + dw * (kw - 1) + 1)
    return (kh, kw), (sh, sw), (dh, dw), (ho, wo), need


def _maxpool2d(node: Node, xs: Arrays) -> np.ndarray:
    x = xs[0]
    k, s, d, hw, need = _pool_geometry(node, x)
    fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    xp = _pad_to(x, node.attrs["pads"], need, fill)
    return windows(xp, k, s, d, hw).max(axis=(4, 5)).astype(x.dtype)


def _avgpool2d(node: Node, xs: Arrays) -> np.ndarray:
    x = xs[0]
    dt = compute_dtype(x)
    k, s, d, hw, need = _pool_geometry(node, x)
    pads = node.attrs["pads"]
    xp = _pad_to(x.astype(dt, copy=False), pads, need, 0.0)
    total = windows(xp, k, s, d, hw).sum(axis=(4, 5), dtype=np.float64)
    ones = np.ones((1, 1) + x.shape[2:], np.float64)
    if node.attrs["count_include_pad"]:
        pt, pl, pb, pr = pads
        ones = np.pad(ones, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=1.0)
        count_src = _pad_to(ones, (0, 0, 0, 0), need, 0.0)
    else:
        count_src = _pad_to(ones, pads, need, 0.0)
    count = windows(count_src, k, s, d, hw).sum(axis=(4, 5))
    return (total / count).astype(out_dtype(node))


def _global_avgpool(node: Node, xs: Arrays) -> np.ndarray:
    x = xs[0]
    axes = tuple(range(2, x.ndim))
    return x.mean(axis=axes, keepdims=True, dtype=np.float64).astype(out_dtype(node))


def _batchnorm(node: Node, xs: Arrays) -> np.ndarray:
    x, scale, bias, mean, var = (a.astype(np.float64) for a in xs)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale / np.sqrt(var + node.attrs["epsilon"])
    y = (x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)
    return y.astype(out_dtype(node))


def _layernorm(node: Node, xs: Arrays) -> np.ndarray:
    x = xs[0].astype(np.float64)
    axis = node.attrs["axis"] % x.ndim
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + node.attrs["epsilon"])
    if len(xs) > 1:
        y = y * xs[1].astype(np.float64)
    if len(xs) > 2:
        y = y + xs[2].astype(np.float64)
    return y.astype(out_dtype(node))


def _softmax(node: Node, xs: Arrays) -> np.ndarray:
    x = xs[0].astype(np.float64)
    axis = node.attrs["axis"]
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(out_dtype(node))


def split_heads(x: np.ndarray, heads: int, perm: tuple[int, int, int, int]) -> np.ndarray:
    """[B, S, H*D] as the view [B, S, H, D] permuted by `perm` ((0, 2, 1, 3): heads first)."""
    b, s, e = x.shape
    return np.transpose(x.reshape(b, s, heads, e // heads), perm)


def _attention(node: Node, xs: Arrays) -> np.ndarray:
    """The decomposed computation, op by op as the reshape/transpose/matmul/mul/add/softmax rules run it."""
    q, k, v = xs[0], xs[1], xs[2]
    heads = node.attrs["heads"]
    scale = np.float32(attention_scale(node.attrs["scale"], q.shape[2], heads))
    scores = np.matmul(split_heads(q, heads, (0, 2, 1, 3)), split_heads(k, heads, (0, 2, 3, 1))) * scale
    if len(xs) == 4:
        scores = scores + xs[3]
    if node.attrs["causal"]:
        scores = scores + causal_mask(scores.shape[2], scores.shape[3])
    s64 = scores.astype(np.float64)
    e = np.exp(s64 - s64.max(axis=-1, keepdims=True))
    probs = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    out = np.matmul(probs, split_heads(v, heads, (0, 2, 1, 3)))
    return np.transpose(out, (0, 2, 1, 3)).reshape(node.outputs[0].type.shape)


def _lrn(node: Node, xs: Arrays) -> np.ndarray:
    x = xs[0].astype(np.float64)
    a = node.attrs
    size = a["size"]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = np.pad(x**2, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    csum = np.cumsum(np.concatenate([np.zeros_like(sq[:, :1]), sq], axis=1), axis=1)
    c = x.shape[1]
    square_sum = csum[:, size : size + c] - csum[:, :c]
    y = x / (a["bias"] + a["alpha"] / size * square_sum) ** a["beta"]
    return y.astype(out_dtype(node))


def _reduce(fn: str):  # type: ignore[no-untyped-def]
    def rule(node: Node, xs: Arrays) -> np.ndarray:
        x = xs[0]
        axes = tuple(node.attrs["axes"]) or None
        keep = node.attrs["keepdims"]
        if fn == "max":
            return np.max(x, axis=axes, keepdims=keep).astype(out_dtype(node))
        acc = np.float64 if x.dtype.kind == "f" else np.int64
        r = getattr(np, fn)(x, axis=axes, keepdims=keep, dtype=acc)
        return np.asarray(r).astype(out_dtype(node))

    return rule


def _qparams(node: Node, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = node.attrs
    scale = np.asarray(a["scale"], np.float32)
    zp = np.asarray(a["zero_point"], np.int32)
    if a["axis"] is not None:
        shape = [1] * x.ndim
        shape[a["axis"] % x.ndim] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    else:  # per tensor: scalars, so a rank-0 input stays rank 0
        scale, zp = scale.reshape(()), zp.reshape(())
    return scale, zp


def _quantize(node: Node, xs: Arrays) -> np.ndarray:
    x = xs[0].astype(np.float32)
    scale, zp = _qparams(node, x)
    dt = out_dtype(node)
    info = np.iinfo(dt)
    q = np.rint(x / scale) + zp
    q = np.where(np.isnan(q), zp, q)  # NaN quantizes to the zero point; infinities saturate
    return np.clip(q, info.min, info.max).astype(dt)


def group_scales(scale: np.ndarray, axis: int, group_size: int, length: int) -> np.ndarray:
    """A grouped dequantize's scale repeated group_size times along `axis`, cut to `length` (short last group)."""
    return np.take(np.repeat(scale, group_size, axis=axis), np.arange(length), axis=axis)


def _dequantize(node: Node, xs: Arrays) -> np.ndarray:
    x = xs[0]
    if len(xs) > 1:  # grouped: an f32 scale per group of group_size along axis, symmetric
        ax = node.attrs["axis"] % x.ndim
        scale = group_scales(np.asarray(xs[1], np.float32), ax, node.attrs["group_size"], x.shape[ax])
        return (x.astype(np.int32).astype(np.float32) * scale).astype(np.float32)
    scale, zp = _qparams(node, x)
    return ((x.astype(np.int32) - zp).astype(np.float32) * scale).astype(np.float32)


def _arg_extreme(fn):  # type: ignore[no-untyped-def]
    """argmax / argmin: numpy's (NaN counts as the extreme), the last of equal extremes with select_last_index."""

    def rule(node: Node, xs: list[np.ndarray]) -> np.ndarray:
        x, a = xs[0], node.attrs
        axis = a["axis"] % x.ndim
        if a["select_last_index"]:
            idx = x.shape[axis] - 1 - fn(np.flip(x, axis=axis), axis=axis)
        else:
            idx = fn(x, axis=axis)
        idx = np.asarray(idx, np.int64)
        return np.expand_dims(idx, axis) if a["keepdims"] else idx

    return rule


def _cumsum(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    """Running sums in the input dtype, in order along the axis (np.cumsum accumulates sequentially)."""
    x, a = xs[0], node.attrs
    axis = a["axis"] % x.ndim
    y = np.flip(x, axis) if a["reverse"] else x
    acc = np.cumsum(y, axis=axis, dtype=x.dtype)
    if a["exclusive"]:
        acc = np.concatenate([np.zeros_like(np.take(acc, [0], axis=axis)), np.delete(acc, -1, axis=axis)], axis=axis)
    return np.flip(acc, axis) if a["reverse"] else acc


def topk_order(x: np.ndarray, axis: int, largest: bool) -> np.ndarray:
    """Positions along `axis` from the largest (or smallest) value down, equal values in index order, NaN last."""
    key = x.astype(np.float64)
    return np.argsort(-key if largest else key, axis=axis, kind="stable")


def _topk(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, a = xs[0], node.attrs
    axis = a["axis"] % x.ndim
    idx = np.take(topk_order(x, axis, a["largest"]), np.arange(a["k"]), axis=axis)
    return [np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)]


NN_RULES = {
    "linear": _linear,
    "matmul": _matmul,
    "conv2d": _conv2d,
    "maxpool2d": _maxpool2d,
    "avgpool2d": _avgpool2d,
    "global-avgpool": _global_avgpool,
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "softmax": _softmax,
    "attention": _attention,
    "lrn": _lrn,
    "cumsum": _cumsum,
    "topk": _topk,
    "argmax": _arg_extreme(np.argmax),
    "argmin": _arg_extreme(np.argmin),
    "reduce-sum": _reduce("sum"),
    "reduce-mean": _reduce("mean"),
    "reduce-max": _reduce("max"),
    "quantize": _quantize,
    "dequantize": _dequantize,
}
