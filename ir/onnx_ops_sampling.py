"""ONNX's GridSample and AffineGrid as compositions of IR ops.

GridSample (opsets 16-22; 2 or 3 spatial axes): the grid's normalized coordinates (x, y[, z], innermost first) are
mapped to pixel coordinates (`align_corners` either way); `nearest` rounds them half to even, `linear` and `cubic`
take 2 or 4 taps per axis with linear or Keys (a = -0.75) weights; a coordinate outside the border is clamped
(`border`) or reflected (`reflection`) first, and every tap is then read as ONNX's definition says: zero outside the
input (`zeros`), the nearest edge pixel (`border`), or reflected back inside (`reflection`). The taps are one
`gather-nd` each over the input with its channels last, summed with their weights (the product of the per-axis
ones) and put back channels first. AffineGrid (2-D and 3-D, constant size): the normalized base grid (a
constant) times theta^T, one batched `matmul`.
"""

from __future__ import annotations

import itertools

import numpy as np

from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, np_dtype, shape_of
from .onnx_ops_shape import slice_handle

MODES = {"bilinear": "linear", "bicubic": "cubic", "linear": "linear", "cubic": "cubic", "nearest": "nearest"}
"""GridSample's mode names (opset 16 and opset 20 spellings) -> the interpolation."""
CUBIC_A = -0.75


def _f32(v: float) -> np.ndarray:
    return np.asarray(v, np.float32)


def _text(value: object, default: str) -> str:
    value = default if value is None else value
    return value.decode() if isinstance(value, bytes) else str(value)


def _border(length: int, align: bool) -> tuple[float, float]:
    """The coordinate range inside which a coordinate is not clamped or reflected."""
    return (0.0, length - 1.0) if align else (-0.5, length - 0.5)


def _reflect(ctx: NodeContext, x: Handle, lo: float, hi: float) -> Handle:
    """x reflected by the near border until it lies in [lo, hi] (ONNX's `_gs_reflect`), elementwise."""
    span = _f32(hi - lo)

    def fold(dx: Handle) -> tuple[Handle, Handle]:
        n = ctx.op("floor", ctx.op("div", dx, span))
        r = ctx.op("sub", dx, ctx.op("mul", n, span))
        even = ctx.op("equal", ctx.op("sub", n, ctx.op("mul", ctx.op("floor", ctx.op("div", n, _f32(2.0))),
                                                          _f32(2.0))), _f32(0.0))
        return r, even

    r_lo, even_lo = fold(ctx.op("sub", _f32(lo), x))
    below = ctx.op("where", even_lo, ctx.op("add", _f32(lo), r_lo), ctx.op("sub", _f32(hi), r_lo))
    r_hi, even_hi = fold(ctx.op("sub", x, _f32(hi)))
    above = ctx.op("where", even_hi, ctx.op("sub", _f32(hi), r_hi), ctx.op("add", _f32(lo), r_hi))
    return ctx.op("where", ctx.op("less", x, _f32(lo)), below, ctx.op("where", ctx.op("greater", x, _f32(hi)),
                                                                      above, x))


def _coordinate(ctx: NodeContext, g: Handle, length: int, align: bool, mode: str, padding: str) -> Handle:
    """One axis's pixel coordinate from its normalized grid values, rounded (nearest), clamped or reflected."""
    if align:
        x = ctx.op("mul", ctx.op("add", g, _f32(1.0)), _f32((length - 1) / 2.0))
    else:
        x = ctx.op("div", ctx.op("sub", ctx.op("mul", ctx.op("add", g, _f32(1.0)), _f32(length)), _f32(1.0)),
                   _f32(2.0))
    if mode == "nearest":
        x = ctx.op("round", x)
    lo, hi = _border(length, align)
    if padding == "border":
        outside = ctx.op("logical-or", ctx.op("less", x, _f32(lo)), ctx.op("greater", x, _f32(hi)))
        x = ctx.op("where", outside, ctx.op("clip", x, min=0.0, max=float(length - 1)), x)
    elif padding == "reflection":
        x = _reflect(ctx, x, lo, hi)
    return x


def _taps(ctx: NodeContext, x: Handle, mode: str) -> list[tuple[Handle, Handle | None]]:
    """(integer position as f32, weight or None) of each tap of one axis."""
    if mode == "nearest":
        return [(ctx.op("cast", ctx.op("cast", x, dtype="i64"), dtype="f32"), None)]  # toward zero, as ONNX
    x0 = ctx.op("floor", x)
    f = ctx.op("sub", x, x0)
    if mode == "linear":
        return [(x0, ctx.op("sub", _f32(1.0), f)), (ctx.op("add", x0, _f32(1.0)), f)]
    a = _f32(CUBIC_A)

    def far(t: Handle) -> Handle:  # |t| in [1, 2]: ((a t - 5a) t + 8a) t - 4a
        return ctx.op("sub", ctx.op("mul", ctx.op("add", ctx.op("mul", ctx.op("sub", ctx.op("mul", a, t),
                                                                                 _f32(5 * CUBIC_A)), t),
                                                         _f32(8 * CUBIC_A)), t), _f32(4 * CUBIC_A))

    def near(t: Handle) -> Handle:  # |t| <= 1: ((a + 2) t - (a + 3)) t t + 1
        return ctx.op("add", ctx.op("mul", ctx.op("mul", ctx.op("sub", ctx.op("mul", _f32(CUBIC_A + 2), t),
                                                                _f32(CUBIC_A + 3)), t), t), _f32(1.0))

    one_minus = ctx.op("sub", _f32(1.0), f)
    weights = [far(ctx.op("add", f, _f32(1.0))), near(f), near(one_minus),
               far(ctx.op("sub", _f32(2.0), f))]
    return [(ctx.op("add", x0, _f32(float(k))), w) for k, w in zip((-1, 0, 1, 2), weights)]


def _tap_index(ctx: NodeContext, t: Handle, length: int, align: bool, padding: str) -> tuple[Handle, Handle | None]:
    """(i64 index inside the axis, bool validity or None) of integer tap positions t (f32)."""
    if padding == "reflection":
        lo, hi = _border(length, align)
        return ctx.op("cast", _reflect(ctx, t, lo, hi), dtype="i64"), None
    index = ctx.op("cast", ctx.op("clip", t, min=0.0, max=float(length - 1)), dtype="i64")
    if padding == "border":
        return index, None
    valid = ctx.op("logical-and", ctx.op("greater-equal", t, _f32(0.0)), ctx.op("less", t, _f32(float(length))))
    return index, valid


@converter("GridSample")
def _grid_sample(ctx: NodeContext) -> list[Handle | None]:
    x, grid = ctx.need(0, "X"), ctx.need(1, "grid")
    xs, gs = shape_of(x), shape_of(grid)
    d = len(xs) - 2
    if d not in (2, 3) or len(gs) != d + 2 or gs[0] != xs[0] or gs[-1] != d:
        raise ValueError(f"GridSample needs X [N, C, {d} spatial axes] (2 or 3) and grid [N, out..., {d}], got "
                         f"{describe(x)}, {describe(grid)}")
    if np_dtype(x) != np.float32 or np_dtype(grid) != np.float32:
        raise UnsupportedError(f"GridSample of {describe(x)} on {describe(grid)}: float32 only")
    mode = MODES.get(_text(ctx.attr("mode"), "linear" if ctx.opset >= 20 else "bilinear"))
    padding = _text(ctx.attr("padding_mode"), "zeros")
    if mode is None or padding not in ("zeros", "border", "reflection"):
        raise ValueError(f"GridSample mode {ctx.attr('mode')!r} / padding_mode {padding!r}")
    align = bool(ctx.attr("align_corners", 0))
    sizes, n, c = xs[2:], xs[0], xs[1]
    if padding == "reflection" and align and 1 in sizes:
        raise UnsupportedError("reflection with align_corners over an axis of one pixel (an empty range)")
    out, q = gs[1:-1], int(np.prod(gs[1:-1]))
    flat_grid = ctx.reshape(grid, [n, q, d])
    per_axis = []
    for axis, length in enumerate(sizes):  # the grid's last axis holds (x, y[, z]): innermost spatial axis first
        g = ctx.reshape(slice_handle(ctx, flat_grid, [d - 1 - axis], [d - axis], [2], [1]), [n, q, 1])
        coord = _coordinate(ctx, g, length, align, mode, padding)
        per_axis.append([(*_tap_index(ctx, t, length, align, padding), w) for t, w in _taps(ctx, coord, mode)])
    strides = [int(np.prod(sizes[a + 1:])) for a in range(d)]
    pixels = ctx.transpose(ctx.reshape(x, [n, c, int(np.prod(sizes))]), [0, 2, 1])  # [N, P, C]
    total: Handle | None = None
    for combo in itertools.product(*per_axis):
        flat = None
        valid = None
        weight = None
        for (index, ok, w), stride in zip(combo, strides):
            term = index if stride == 1 else ctx.op("mul", index, np.asarray(stride, np.int64))
            flat = term if flat is None else ctx.op("add", flat, term)
            valid = ok if valid is None else (valid if ok is None else ctx.op("logical-and", valid, ok))
            weight = w if weight is None else (weight if w is None else ctx.op("mul", weight, w))
        value = ctx.op("gather-nd", pixels, flat, batch_dims=1)  # [N, Q, C]
        if valid is not None:
            value = ctx.op("where", valid, value, _f32(0.0))
        if weight is not None:
            value = ctx.op("mul", value, weight)
        total = value if total is None else ctx.op("add", total, value)
    assert total is not None
    return [ctx.reshape(ctx.transpose(total, [0, 2, 1]), [n, c, *out])]


def _base_grid(sizes: list[int], align: bool) -> np.ndarray:
    """[prod(sizes), D + 1]: every output position's normalized coordinates (innermost axis first) and a 1."""
    axes = []
    for length in sizes:
        if align:
            axes.append(np.linspace(-1.0, 1.0, length) if length > 1 else np.array([-1.0]))
        else:
            axes.append((2.0 * np.arange(length) + 1.0) / length - 1.0)
    mesh = np.meshgrid(*axes, indexing="ij")
    coords = [m.reshape(-1) for m in reversed(mesh)] + [np.ones(int(np.prod(sizes)))]
    return np.stack(coords, axis=1).astype(np.float32)


@converter("AffineGrid")
def _affine_grid(ctx: NodeContext) -> list[Handle | None]:
    theta = ctx.need(0, "theta")
    size = ctx.const(1, "size")
    if size is None:
        raise UnsupportedError("AffineGrid with a size computed at run time")
    dims = [int(v) for v in np.asarray(size).reshape(-1)]
    n, d = dims[0], len(dims) - 2
    if d not in (2, 3) or shape_of(theta) != (n, d, d + 1) or np_dtype(theta) != np.float32:
        raise ValueError(f"AffineGrid needs f32 theta [N, {d}, {d + 1}] for size {dims}, got {describe(theta)}")
    base = _base_grid(dims[2:], bool(ctx.attr("align_corners", 0)))  # [P, D + 1]
    grid = ctx.op("matmul", base, ctx.transpose(theta, [0, 2, 1]))  # [N, P, D]
    return [ctx.reshape(grid, [n, *dims[2:], d])]
