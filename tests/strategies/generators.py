"""Op generators of the random-graph strategy: each adds nodes and returns (value, magnitude bound)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from tensorsmith.ir import GraphBuilder, Value, i64
from tensorsmith.ir.ops.shape_ops import slice_length

from .state import Reject, State, bcast_shape, factor_shape, guarded, partner, rank_in


def g_unary(s: State) -> tuple[Value, float]:
    """An activation or transcendental; log/sqrt get an abs()+1 guard, exp a clip."""
    x, b = s.pick(), s.b
    op = s.choice(("relu", "gelu", "sigmoid", "tanh", "erf", "neg", "abs", "clip", "exp", "sqrt", "log", "sin", "cos"))
    bx = s.bnd(x)
    if op == "gelu":
        return b.gelu(x, approximate=s.choice(("none", "tanh"))), bx
    if op in ("sigmoid", "tanh", "erf", "sin", "cos"):
        return b.op(op, x), 1.0
    if op == "clip":
        lo, hi = -s.int(0, 4) / 2, s.int(0, 4) / 2
        return b.clip(x, min=lo, max=hi), max(-lo, hi)
    if op == "exp":
        if bx > 5:
            x = b.clip(x, min=-5.0, max=5.0)
        return b.exp(x), math.exp(min(bx, 5.0))
    if op in ("sqrt", "log"):
        return b.op(op, guarded(s, x)), bx + 1
    return b.op(op, x), bx


def g_trigonometric(s: State) -> tuple[Value, float]:
    """A circular or hyperbolic function or an inverse, its argument clipped into its domain (tan away from its
    poles, sinh / cosh to [-3, 3], acosh's argument abs()+1 guarded)."""
    x, b = s.pick(), s.b
    bx = s.bnd(x)
    op = s.choice(("tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh"))
    if op in ("asin", "acos", "atanh"):
        return b.op(op, b.clip(x, min=-0.9, max=0.9)), 4.0
    if op == "tan":
        return b.op(op, b.clip(x, min=-1.2, max=1.2)), 3.0
    if op in ("sinh", "cosh"):
        return b.op(op, b.clip(x, min=-3.0, max=3.0)), 11.0
    if op == "acosh":
        return b.op(op, guarded(s, x)), math.log(2 * (bx + 1)) + 1
    return b.op(op, x), (math.pi / 2 if op == "atan" else math.log(2 * bx + 1) + 1)


def g_binary(s: State) -> tuple[Value, float]:
    """add/sub/mul/div/pow/maximum/minimum against itself, another value or a broadcast constant."""
    a, b = s.pick(), s.b
    y = partner(s, a)
    ba, by = s.bnd(a), s.bound.get(id(y), 1.0)
    op = s.choice(("add", "sub", "mul", "div", "pow", "maximum", "minimum"))
    if op == "div":
        return b.div(a, guarded(s, y)), ba
    if op == "pow":
        e = b.const(np.float32(s.choice((0.5, 1.0, 2.0))) * np.ones(bcast_shape(s, a.type.shape), np.float32), "e")
        return b.pow(guarded(s, a), e), (ba + 1) ** 2
    if s.bool():
        a, y = y, a
    bound = ba * by if op == "mul" else (ba + by if op in ("add", "sub") else max(ba, by))
    return b.op(op, a, y), bound


def g_select(s: State) -> tuple[Value, float]:
    """where(condition, a, y) on comparisons of a with its partner y, maybe two combined by a logical op, maybe
    negated (the masks exported models compute at run time). Only a against y: the result stays continuous where
    a and y meet, so backends that round a or y apart by float reassociation still agree within tolerance."""
    a, b = s.pick(), s.b
    y = partner(s, a)
    cmp = ("equal", "less", "less-equal", "greater", "greater-equal")
    cond = b.op(s.choice(cmp), a, y)
    if s.bool():
        other = b.op(s.choice(cmp), *((a, y) if s.bool() else (y, a)))
        cond = b.op(s.choice(("logical-and", "logical-or", "logical-xor")), cond, other)
    if s.bool():
        cond = b.op("logical-not", cond)
    if s.bool():
        a, y = y, a
    return b.op("where", cond, a, y), max(s.bnd(a), s.bound.get(id(y), 1.0))


def g_rounding(s: State) -> tuple[Value, float]:
    """floor / ceil / round / sign of a graph input (scaled by 4), or fmod by 0.75. Only of inputs: a
    value computed upstream may round apart on two backends (float reassociation) and then step to a neighbouring
    integer, which no tolerance covers; inputs are the same bits everywhere."""
    names = {v.name for v in s.b.inputs}
    x, b = s.pick(lambda v: v.name in names and v.type.dtype.name == "f32"), s.b
    op = s.choice(("floor", "ceil", "round", "sign", "mod"))
    if op == "mod":  # C's fmod is exact: x - n * 0.75 with the dividend's sign
        return b.op("mod", x, np.float32(0.75), fmod=True), 0.75
    y = b.op(op, b.mul(x, np.float32(4.0)) if op != "sign" else x)
    return b.mul(y, np.float32(0.25)), s.bnd(x) + 1


def g_arg_extreme(s: State) -> tuple[Value, float]:
    """argmax / argmin / topk of a graph input along an axis (inputs only, as g_rounding), cast back to f32."""
    names = {v.name for v in s.b.inputs}
    x, b = s.pick(lambda v: v.name in names and v.type.dtype.name == "f32" and v.type.rank >= 1), s.b
    axis = s.int(-x.type.rank, x.type.rank - 1)
    if s.bool():  # topk: its values (moved, never computed) and its positions
        values, idx = b.op_multi("topk", x, k=s.int(1, x.type.shape[axis]), axis=axis, largest=s.bool())
        return b.add(values, b.cast(idx, dtype="f32")), s.bnd(x) + x.type.shape[axis]
    idx = b.op(s.choice(("argmax", "argmin")), x, axis=axis, keepdims=s.bool(), select_last_index=s.bool())
    return b.cast(idx, dtype="f32"), float(x.type.shape[axis])


def g_cumsum(s: State) -> tuple[Value, float]:
    """Running sums along an axis (maybe exclusive, maybe from the end)."""
    x = s.pick(lambda v: v.type.dtype.name == "f32" and v.type.rank >= 1)
    axis = s.int(-x.type.rank, x.type.rank - 1)
    y = s.b.op("cumsum", x, axis=axis, exclusive=s.bool(), reverse=s.bool())
    return y, s.bnd(x) * max(x.type.shape[axis], 1)


def g_identities(s: State) -> tuple[Value, float]:
    """x*1, 1*x, x+0, x-0, x/1, transpose of transpose, reshape of reshape, dropout, identity."""
    x, b = s.pick(), s.b
    bx, shape = s.bnd(x), x.type.shape
    kind = s.choice(("mul1", "add0", "sub0", "div1", "tt", "rr", "dropout", "identity"))
    if kind in ("mul1", "div1"):
        one = b.const(np.ones(bcast_shape(s, shape), np.float32), "one")
        y = b.div(x, one) if kind == "div1" else (b.mul(x, one) if s.bool() else b.mul(one, x))
        return y, bx
    if kind in ("add0", "sub0"):
        zero = b.const(np.zeros(bcast_shape(s, shape), np.float32), "zero")
        return (b.sub(x, zero) if kind == "sub0" else b.add(zero, x) if s.bool() else b.add(x, zero)), bx
    if kind == "tt":
        if x.type.rank < 2:
            raise Reject
        p = s.draw(st.permutations(range(x.type.rank)))
        q = list(np.argsort(p)) if s.bool() else s.draw(st.permutations(range(x.type.rank)))
        return b.transpose(b.transpose(x, p), [int(i) for i in q]), bx
    if kind == "rr":
        mid = factor_shape(s, x.type.numel)
        end = shape if s.bool() else factor_shape(s, x.type.numel)
        return b.reshape(b.reshape(x, mid), end), bx
    return (b.dropout(x, ratio=0.1) if kind == "dropout" else b.identity(x)), bx


def g_reshape(s: State) -> tuple[Value, float]:
    """A reshape to a random factorization of the element count (sometimes written with -1)."""
    x = s.pick()
    shape = list(factor_shape(s, x.type.numel))
    if s.bool():
        shape[s.int(0, len(shape) - 1)] = -1
    return s.b.reshape(x, shape), s.bnd(x)


def g_transpose(s: State) -> tuple[Value, float]:
    """A random permutation of the axes."""
    x = s.pick(rank_in(2))
    return s.b.transpose(x, s.draw(st.permutations(range(x.type.rank)))), s.bnd(x)


def g_flatten(s: State) -> tuple[Value, float]:
    """flatten at a random (possibly negative) axis."""
    x = s.pick(rank_in(1))
    return s.b.flatten(x, axis=s.int(-x.type.rank, x.type.rank)), s.bnd(x)


def g_linear(s: State) -> tuple[Value, float]:
    """linear with a constant weight and an optional bias."""
    x = s.pick(rank_in(1))
    k, n = x.type.shape[-1], s.int(1, 8)
    w = s.const((n, k), name="w")
    bias = s.const((n,), name="bias") if s.bool() else None
    return s.b.linear(x, w, bias), k * s.bnd(x) + 1


def g_matmul(s: State) -> tuple[Value, float]:
    """matmul by a constant, by another value, or x @ x^T (attention-score shape)."""
    a = s.pick(rank_in(2))
    k = a.type.shape[-1]
    kind = s.choice(("const", "self_t", "value"))
    if kind == "self_t":
        perm = list(range(a.type.rank))
        perm[-2:] = perm[-1], perm[-2]
        return s.b.matmul(a, s.b.transpose(a, perm)), k * s.bnd(a) ** 2
    if kind == "value":
        cands = [v for v in s.pool if v.type.rank >= 2 and v.type.shape[-2] == k]
        if cands and s.bool():
            v = s.choice(cands)
            return s.b.matmul(a, v), k * s.bnd(a) * s.bnd(v)
    w = s.const((k, s.int(1, 8)), name="w")
    return s.b.matmul(a, w), k * s.bnd(a)


def g_softmax(s: State) -> tuple[Value, float]:
    """softmax along a random axis."""
    x = s.pick(rank_in(1))
    return s.b.softmax(x, axis=s.int(-x.type.rank, x.type.rank - 1)), 1.0


def g_attention(s: State) -> tuple[Value, float]:
    """attention of a [B, S, E] value (rank 2 gets a batch axis) over itself, another value or constant k/v,
    with a divisor of E as heads, an optional broadcast mask, a scale that keeps |scores| <= 8, causal or not."""
    x, b = s.pick(lambda v: v.type.dtype.name == "f32" and v.type.rank in (2, 3)), s.b
    q = x if x.type.rank == 3 else b.reshape(x, (1,) + x.type.shape)
    nb, sq, e = q.type.shape
    kind = s.choice(("self", "value", "const"))
    cands = [v for v in s.pool if v.type.rank == 3 and v.type.dtype.name == "f32" and v.type.shape[0] == nb
             and v.type.shape[2] == e]
    if kind == "value" and cands:
        k = s.choice(cands)
        v = k if s.bool() else s.choice(cands + [q])
        if v.type.shape != k.type.shape:
            v = k
    elif kind == "const":
        skv = s.int(1, 9)
        k, v = s.const((nb, skv, e), name="k"), s.const((nb, skv, e), name="v")
        s.bound[id(k)] = s.bound[id(v)] = 1.0
    else:
        k = v = q
    heads = s.choice(h for h in range(1, e + 1) if e % h == 0)
    full = (nb, heads, sq, k.type.shape[1])
    mask = s.const(tuple(d if s.bool() else 1 for d in full[4 - s.int(0, 4):]), -4.0, 1.0, "mask") \
        if s.bool() else None
    reach = s.bound.get(id(q), s.bnd(x)) * s.bound.get(id(k), 1.0) * (e // heads)
    scale = 0.0 if reach / math.sqrt(e // heads) <= 8 else 8.0 / reach
    return b.attention(q, k, v, mask, heads=heads, scale=scale, causal=s.bool()), s.bound.get(id(v), s.bnd(x))


def g_layernorm(s: State) -> tuple[Value, float]:
    """layernorm over axis..last, with optional scale and bias."""
    x = s.pick(rank_in(1))
    axis = s.int(-x.type.rank, x.type.rank - 1)
    tail = x.type.shape[axis:]
    scale = s.const(tail, 0.5, 1.5, "gamma") if s.bool() else None
    bias = s.const(tail, -0.5, 0.5, "beta") if scale is not None and s.bool() else None
    return s.b.layernorm(x, scale, bias, axis=axis), 1.5 * math.sqrt(math.prod(tail)) + 0.5


def g_concat(s: State) -> tuple[Value, float]:
    """concat of two or three values/constants that agree off the axis."""
    x = s.pick(rank_in(1))
    r = x.type.rank
    axis = s.int(-r, r - 1)
    ax = axis % r

    def fits(v: Value) -> bool:
        return v.type.rank == r and all(v.type.shape[i] == x.type.shape[i] for i in range(r) if i != ax)

    parts, bound = [x], s.bnd(x)
    for _ in range(s.int(1, 2)):
        if s.bool():
            v = s.choice([v for v in s.pool if fits(v)])
        else:
            shape = list(x.type.shape)
            shape[ax] = s.int(1, 3)
            v = s.const(tuple(shape))
            s.bound[id(v)] = 1.0
        parts.append(v)
        bound = max(bound, s.bound[id(v)])
    return s.b.concat(parts, axis=axis), bound


def slice_bounds(s: State, d: int, step: int) -> tuple[int, int]:
    """start, end of a non-empty slice of an axis of size `d`, in varied spellings (negative, clamped)."""
    start = s.int(0, d - 1)
    if step > 0:
        end = s.int(start + 1, d)
        end_text = s.choice((end, d + 3, 2**31 - 1)) if end == d else s.choice((end, end - d))
        start_text = s.choice((start, start - d, -d - 5)) if start == 0 else s.choice((start, start - d))
    else:
        end = s.int(-1, start - 1)
        end_text = s.choice((-d - 1, -(2**31))) if end == -1 else s.choice((end, end - d))
        start_text = s.choice((start, -1, d + 3, 2**31 - 1)) if start == d - 1 else s.choice((start, start - d))
    return start_text, end_text


def g_slice(s: State) -> tuple[Value, float]:
    """A non-empty slice on one or two axes, with negative steps and out-of-range bounds."""
    x = s.pick(lambda v: 1 <= v.type.rank and v.type.numel > 1)
    r = x.type.rank
    axes = s.draw(st.lists(st.integers(0, r - 1), min_size=1, max_size=min(2, r), unique=True))
    starts, ends, steps, named = [], [], [], []
    for ax in axes:
        step = s.choice((1, 1, 2, -1, -2, 3))
        start, end = slice_bounds(s, x.type.shape[ax], step)
        assert slice_length(x.type.shape[ax], start, end, step) >= 1
        starts.append(start)
        ends.append(end)
        steps.append(step)
        named.append(ax - r if s.bool() else ax)
    return s.b.slice(x, starts, ends, named, steps), s.bnd(x)


def g_reduce(s: State) -> tuple[Value, float]:
    """reduce-sum/mean/max over random axes (none: all), with or without keepdims."""
    x = s.pick()
    r = x.type.rank
    axes = s.draw(st.lists(st.integers(0, max(r - 1, 0)), max_size=r, unique=True)) if r else []
    op = s.choice(("reduce-sum", "reduce-mean", "reduce-max"))
    reduced = math.prod(x.type.shape[a] for a in axes) if axes else x.type.numel
    axes = [a - r if s.bool() else a for a in axes]
    y = s.b.op(op, x, axes=axes, keepdims=s.bool())
    return y, s.bnd(x) * (reduced if op == "reduce-sum" else 1)


def g_gather(s: State) -> tuple[Value, float]:
    """gather, gather-elements, scatter-elements, gather-nd or scatter-nd with constant integer indices (negative ones
    included)."""
    x = s.pick(rank_in(1))
    axis = s.int(-x.type.rank, x.type.rank - 1)
    d = x.type.shape[axis]
    if s.bool():  # indices shaped like x but along the axis
        shape = tuple(s.int(1, 3) if k == axis % x.type.rank else n for k, n in enumerate(x.type.shape))
        idx = s.b.const(s.rng.integers(-d, d, shape).astype(np.int64), "idx")
        if s.bool():  # scatter constant updates into x (replacing, or adding / taking the max in update order)
            reduction = s.choice(("none", "add", "max"))
            upd = s.const(shape, name="upd")
            bound = s.bnd(x) + shape[axis % x.type.rank] if reduction == "add" else s.bnd(x) + 1
            return s.b.op("scatter-elements", x, idx, upd, axis=axis, reduction=reduction), bound
        return s.b.op("gather-elements", x, idx, axis=axis), s.bnd(x)
    if s.bool():  # gather-nd, or scatter-nd of constant rows, with index tuples over x's leading axes
        k = s.int(1, x.type.rank)
        tuples = np.stack([s.rng.integers(-n, n, 3) for n in x.type.shape[:k]], axis=-1).astype(np.int64)
        if s.bool():
            return s.b.op("gather-nd", x, s.b.const(tuples, "tuples")), s.bnd(x)
        upd = s.const((3,) + x.type.shape[k:], name="rows")
        return s.b.op("scatter-nd", x, s.b.const(tuples, "tuples"), upd, reduction=s.choice(("none", "max"))), \
            s.bnd(x) + 1
    idx_shape = s.choice(((s.int(1, 4),), (s.int(1, 3), s.int(1, 2)), ()))
    idx = s.b.const(s.rng.integers(-d, d, idx_shape).astype(s.choice((np.int64, np.int32))), "idx")
    return s.b.gather(x, idx, axis=axis), s.bnd(x)


def g_embedding(s: State) -> tuple[Value, float]:
    """gather(table, %ids): a lookup into a constant table with an integer graph input."""
    if "ids" in s.inputs:
        raise Reject
    vocab, dim = s.int(2, 10), s.int(1, 8)
    shape = (s.int(1, 2), s.int(1, 4))
    ids = s.b.input("ids", i64[shape])
    s.inputs["ids"] = s.rng.integers(-vocab, vocab, shape).astype(np.int64)
    return s.b.gather(s.const((vocab, dim), name="table"), ids), 1.0


def g_conv(s: State) -> tuple[Value, float]:
    """conv2d (grouped/depthwise, strided, padded, dilated), then maybe batchnorm and relu."""
    x, b = s.pick(rank_in(4, 4)), s.b
    c = x.type.shape[1]
    groups = s.choice([g for g in range(1, c + 1) if c % g == 0])
    co = groups * s.int(1, 3)
    k = (s.int(1, 3), s.int(1, 3))
    w = s.const((co, c // groups) + k, name="w")
    bias = s.const((co,), name="bias") if s.bool() else None
    y = b.conv2d(x, w, bias, strides=(s.int(1, 2), s.int(1, 2)), pads=[s.int(0, 1) for _ in range(4)],
                 dilations=(s.int(1, 2), s.int(1, 2)), groups=groups)
    bound = c // groups * k[0] * k[1] * s.bnd(x) + 1
    if s.bool():
        mean, var = s.const((co,), name="mean"), s.const((co,), 0.5, 2.0, "var")
        y = b.batchnorm(y, s.const((co,), 0.5, 1.5, "gamma"), s.const((co,), name="beta"), mean, var)
        bound = (bound + 1) / math.sqrt(0.5) * 1.5 + 1
    if s.bool():
        y = b.relu(y)
    return y, bound


def g_pool(s: State) -> tuple[Value, float]:
    """maxpool2d/avgpool2d with random window, stride, padding, dilation and ceil mode."""
    x = s.pick(rank_in(4, 4))
    op = s.choice(("maxpool2d", "avgpool2d"))
    k, dil = (s.int(1, 3), s.int(1, 3)), (s.int(1, 2), s.int(1, 2))
    spans = [d * (kk - 1) + 1 for kk, d in zip(k, dil)]
    pads = [s.int(0, spans[i % 2] // 2) for i in range(4)]
    extra = {"count_include_pad": s.bool()} if op == "avgpool2d" else {}
    y = s.b.op(op, x, kernel=k, strides=(s.int(1, 3), s.int(1, 3)), pads=pads, dilations=dil,
               ceil_mode=s.bool(), **extra)
    return y, s.bnd(x)


def g_norms(s: State) -> tuple[Value, float]:
    """global-avgpool, batchnorm and lrn on tensors of rank >= 3 (batchnorm: >= 2)."""
    x = s.pick(rank_in(2))
    op = s.choice(("batchnorm",) + (("global-avgpool", "lrn") if x.type.rank >= 3 else ()))
    bx = s.bnd(x)
    if op == "global-avgpool":
        return s.b.op(op, x), bx
    if op == "lrn":
        return s.b.lrn(x, size=s.int(1, 5), alpha=1e-3, beta=0.75, bias=1.0), bx
    c = (x.type.shape[1],)
    y = s.b.batchnorm(x, s.const(c, 0.5, 1.5, "gamma"), s.const(c, name="beta"), s.const(c, name="mean"),
                      s.const(c, 0.5, 2.0, "var"))
    return y, (bx + 1) / math.sqrt(0.5) * 1.5 + 1


def g_fake_quant(s: State) -> tuple[Value, float]:
    """dequantize(quantize(x)) per tensor or per axis, int8 or uint8."""
    x = s.pick()
    bx = max(s.bnd(x), 1e-2)
    dtype = s.choice(("i8", "u8"))
    zp = 0 if dtype == "i8" else 128
    if x.type.rank and s.bool():
        axis = s.int(-x.type.rank, x.type.rank - 1)
        n = x.type.shape[axis]
        scale = [bx / 127 * float(f) for f in s.rng.uniform(0.5, 1.5, n)]
        q = s.b.quantize(x, scale, [zp] * n, axis=axis, dtype=dtype)
    else:
        q = s.b.quantize(x, bx / 127, zp, dtype=dtype)
    return s.b.dequantize(q), 2 * bx * 1.5


def g_integer(s: State) -> tuple[Value, float]:
    """quantize-dynamic then qlinear / qmatmul / qconv2d (7- or 8-bit weights, with or without a weight zero point),
    f32 out or requantized and dequantized again."""
    x, b = s.pick(rank_in(1)), s.b
    op = "qconv2d" if x.type.rank == 4 and s.bool() else s.choice(("qlinear", "qmatmul") if x.type.rank >= 2
                                                                    else ("qlinear",))
    gran = "tensor" if op == "qconv2d" else s.choice(("tensor", "row"))
    q, xs, xz = b.op_multi("quantize-dynamic", x, granularity=gran)
    bits = s.choice((7, 8))
    hi = 63 if bits == 7 else 127
    bx = max(s.bnd(x), 1e-2)
    if op == "qconv2d":
        _, c, h, wd = x.type.shape
        co, kh, kw = s.int(1, 4), s.int(1, min(3, h)), s.int(1, min(3, wd))
        wshape, n, k = (co, c, kh, kw), co, c * kh * kw
        attrs = {"pads": [s.int(0, 1) for _ in range(4)], "strides": (s.int(1, 2), s.int(1, 2))}
    else:
        k, n = x.type.shape[-1], s.int(1, 8)
        wshape, attrs = ((n, k) if op == "qlinear" else (k, n)), {}
    w = b.const(s.rng.integers(-hi - 1, hi + 1, wshape).astype(np.int8), "wq")
    ws = b.const((s.rng.uniform(0.5, 1.0, n) / hi).astype(np.float32), "ws")
    args = [q, xs, xz, w, ws] + ([s.const((n,), name="bias")] if s.bool() else [])
    if s.bool():  # a weight zero point, per tensor or per output channel: |w - t| up to 255
        attrs["weight_zero_point"] = [int(t) for t in s.rng.integers(-128, 128, s.choice((1, n)))]
    bound = k * bx * 2.2 * (1 + 128 / (hi + 1) * ("weight_zero_point" in attrs)) + 1
    if s.bool():
        return b.op(op, *args, weight_bits=bits, **attrs), bound
    dtype = s.choice(("u8", "i8"))
    zp = 128 if dtype == "u8" else 0
    y = b.op(op, *args, weight_bits=bits, dtype=dtype, out_scale=[bound / 127], out_zero_point=[zp], **attrs)
    return b.op("dequantize", y, scale=[bound / 127], zero_point=[zp]), bound * 1.1


def g_qadd(s: State) -> tuple[Value, float]:
    """Two values of one shape quantized per tensor (u8 or i8), added by qadd into u8 or i8, dequantized."""
    x = s.pick()
    y = s.pick(lambda v: v.type.shape == x.type.shape)
    b = s.b
    args: list[Value | np.ndarray] = []
    for v in (x, y):
        bv = max(s.bnd(v), 1e-2)
        dtype = s.choice(("i8", "u8"))
        zp = 0 if dtype == "i8" else 128
        args += [b.quantize(v, bv / 127, zp, dtype=dtype), np.array([bv / 127], np.float32), np.array([zp], np.int32)]
    bound = (max(s.bnd(x), 1e-2) + max(s.bnd(y), 1e-2)) * 1.02
    dtype = s.choice(("u8", "i8"))
    zp = 128 if dtype == "u8" else 0
    q = b.op("qadd", *args, dtype=dtype, out_scale=bound / 127, out_zero_point=zp)
    return b.op("dequantize", q, scale=[bound / 127], zero_point=[zp]), bound * 1.02


def g_cast(s: State) -> tuple[Value, float]:
    """A cast to f16, bf16 or i32 and back to f32."""
    x = s.pick()
    mid = s.choice(("f16", "bf16", "i32"))
    return s.b.cast(s.b.cast(x, dtype=mid), dtype="f32"), s.bnd(x) * 1.01 + 1


def g_const_node(s: State) -> tuple[Value, float]:
    """A node whose inputs are all constants, combined with a live value."""
    x, b = s.pick(), s.b
    shape = bcast_shape(s, x.type.shape)
    c1 = s.const(shape, name="k")
    op = s.choice(("add", "mul", "tanh", "relu"))
    y = b.op(op, c1, s.const(shape, name="k")) if op in ("add", "mul") else b.op(op, c1)
    return (b.add(x, y), s.bnd(x) + 2) if s.bool() else (b.mul(y, x), 2 * s.bnd(x))


def g_duplicate(s: State) -> tuple[Value, float]:
    """The same op on the same inputs as an earlier node (a common subexpression)."""
    pool = {id(v) for v in s.pool}
    n = s.choice([n for n in s.b.nodes if len(n.outputs) == 1 and id(n.output) in pool])
    dup = s.b.op(n.op, *n.inputs, **n.attrs)
    return dup, s.bnd(n.output)


def g_fused(s: State) -> tuple[Value, float]:
    """A fused region: an activation then add/mul by a broadcast constant, as one node with a body."""
    x, b = s.pick(lambda v: v.type.dtype.name == "f32"), s.b
    k = s.const(bcast_shape(s, x.type.shape), name="k")
    inner = GraphBuilder("region")
    px, pk = inner.input("x", x.type), inner.input("k", k.type)
    act = inner.op(s.choice(("relu", "tanh", "sigmoid")), px, name="act")
    inner.output(inner.op(s.choice(("add", "mul")), act, pk, name="out"))
    return b.op("fused", x, k, body=inner.build()), s.bnd(x) + 1


GENERATORS = (
    g_unary, g_unary, g_trigonometric, g_binary, g_binary, g_select, g_rounding, g_arg_extreme, g_cumsum,
    g_identities, g_identities, g_reshape, g_transpose, g_flatten, g_linear, g_linear, g_matmul, g_softmax,
    g_attention, g_layernorm, g_concat, g_slice, g_reduce, g_gather, g_embedding, g_conv, g_pool, g_norms,
    g_fake_quant, g_integer, g_qadd, g_cast, g_const_node, g_duplicate, g_fused,
)
FOUR_D = (g_conv, g_conv, g_pool, g_pool, g_norms, g_integer)
"""Drawn more often while the graph holds a 4-D value."""
