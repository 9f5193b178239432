"""ONNX Resize (opset 11 on) and Upsample: per resized axis, gathers at constant indices and a weighted sum.

Resizing is separable: along each axis the source coordinate of every output position follows from
`coordinate_transformation_mode` (half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners,
asymmetric, tf_crop_and_resize), and the output is a weighted sum of 2 (nearest, linear) or 4 (cubic) input
positions around it, clamped to the edges (ONNX's edge padding). The shapes are static, so the positions and
weights are computed here, once, in float64: `nearest` becomes one `gather` per axis (exact data movement),
`linear` / `cubic` gathers times constant weights, summed. tf_crop_and_resize sets positions whose source lies
outside the input to `extrapolation_value` (a constant mask, `where`). `exclude_outside` drops the taps outside
the input and renormalizes. `antialias` (linear and cubic) stretches the kernel by 1 / scale when downsampling:
2 ceil(1 / scale) (linear) or 2 ceil(2 / scale) (cubic) taps per output position, as ONNX's definition counts them,
weights normalized to sum 1. Refused: antialiased nearest, Resize before opset 11, linear / cubic of integer tensors.
"""

from __future__ import annotations

import math

import numpy as np

from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, norm_axis, np_dtype, shape_of

TAPS = {"nearest": 2, "linear": 2, "cubic": 4}
"""Input positions each output position reads, by mode."""
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
TRANSFORMS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
              "tf_crop_and_resize")


def source_coordinates(transform: str, n_out: int, n_in: int, scale: float,
                       roi: tuple[float, float] = (0.0, 1.0)) -> tuple[np.ndarray, np.ndarray | None]:
    """The input coordinate of each of the n_out output positions (float64), and for tf_crop_and_resize which
    of them fall outside the input (else None). `scale` is n_out / n_in as ONNX computes it (a float)."""
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in  # ONNX's output_width: a float, not n_out
    if transform == "align_corners":
        return (np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)), None
    if transform == "asymmetric":
        return y / scale, None
    if transform == "pytorch_half_pixel":
        return (np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5), None
    if transform == "half_pixel":
        return (y + 0.5) / scale - 0.5, None
    if transform == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        return offset + (y + 0.5) / scale - 0.5, None
    start, end = roi
    if width == 1:
        x = np.full(n_out, (end - start) * (n_in - 1) / 2)
    else:
        x = y * (end - start) * (n_in - 1) / (width - 1)
    x = x + start * (n_in - 1)
    return x, (x < 0) | (x > n_in - 1)


def _antialias_taps(mode: str, scale: float) -> int:
    """Taps of an antialiased linear or cubic kernel at `scale` (ONNX's footprint: stretched by 1 / scale below 1)."""
    s = min(scale, 1.0)
    start = int(np.floor((-1.0 if mode == "linear" else -2.0) / s) + 1)
    return 2 - 2 * start


def _antialias_weights(mode: str, r: np.ndarray, taps: int, scale: float, cubic_a: float) -> np.ndarray:
    """[n_out, taps] weights of the antialiased kernel at offsets r (see `tap_table`), each row summing to 1."""
    s = min(scale, 1.0)
    t = np.abs((np.arange(1 - taps // 2, 1 + taps // 2)[None, :] - r[:, None]) * s)
    if mode == "linear":
        w = np.clip(1 - t, 0.0, 1.0)
    else:
        a = cubic_a
        w = np.where(t <= 1, (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1,
                     np.where(t < 2, a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a, 0.0))
    return w / w.sum(axis=1, keepdims=True)


def tap_table(mode: str, x: np.ndarray, n_in: int, nearest_mode: str = "round_prefer_floor",
              cubic_a: float = -0.75, exclude_outside: bool = False,
              antialias_scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64 [n_out, taps] clamped to the input, weights float64 [n_out, taps]) at source coordinates
    x: the taps are the input positions nearest x, the lower one first at a tie, with r = x - (first tap + taps/2
    - 1) in (0, 1] (1 at an integer x, which then weighs the tap at x alone). `antialias_scale`: the axis's scale
    of an antialiased linear or cubic resize (more taps when it is below 1)."""
    taps = TAPS[mode] if antialias_scale is None else _antialias_taps(mode, antialias_scale)
    fl = np.floor(x)
    integer = x == fl
    r = np.where(integer, 1.0, x - fl)
    first = np.where(integer, fl - taps // 2, fl - taps // 2 + 1).astype(np.int64)
    idx = first[:, None] + np.arange(taps)[None, :]
    if antialias_scale is not None:
        w = _antialias_weights(mode, r, taps, antialias_scale, cubic_a)
    elif mode == "linear":
        w = np.stack([1 - r, r], axis=1)
    elif mode == "cubic":
        a, s = cubic_a, 1 - r
        w = np.stack([((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                      ((a + 2) * r - (a + 3)) * r * r + 1,
                      ((a + 2) * s - (a + 3)) * s * s + 1,
                      ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a], axis=1)
    else:
        upper = {"round_prefer_floor": r > 0.5, "round_prefer_ceil": r >= 0.5, "floor": np.zeros_like(integer),
                 "ceil": np.ones_like(integer)}[nearest_mode] | integer
        w = np.stack([~upper, upper], axis=1).astype(np.float64)
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, n_in - 1), w


def _along(values: np.ndarray, axis: int, rank: int, dtype: np.dtype) -> np.ndarray:
    """A per-position vector shaped to broadcast along `axis` of a rank-`rank` tensor."""
    shape = [1] * rank
    shape[axis] = values.size
    return values.reshape(shape).astype(dtype)


def resize_axis(ctx: NodeContext, y: Handle, axis: int, mode: str, x: np.ndarray, outside: np.ndarray | None,
                extrapolation: float, **taps: object) -> Handle:
    """y resized along `axis` to the source coordinates x (see `tap_table`), outside positions set to
    `extrapolation`."""
    shape = shape_of(y)
    dt = np_dtype(y)
    idx, w = tap_table(mode, x, shape[axis], **taps)  # type: ignore[arg-type]
    if mode == "nearest":
        out = ctx.op("gather", y, idx[np.arange(idx.shape[0]), w.argmax(axis=1)], axis=axis)
    else:
        out = None
        for j in range(idx.shape[1]):
            term = ctx.op("mul", ctx.op("gather", y, idx[:, j], axis=axis), _along(w[:, j], axis, len(shape), dt))
            out = term if out is None else ctx.op("add", out, term)
    if outside is not None and outside.any():
        out = ctx.op("where", _along(outside, axis, len(shape), np.dtype(bool)), np.asarray(extrapolation, dt), out)
    return out


def _resize_plan(ctx: NodeContext, x: Handle, axes: list[int]) -> tuple[list[float], list[int], list[float]]:
    """(scale per axis, output size per axis, roi as [starts..., ends...] over all axes) of a Resize node."""
    shape = shape_of(x)
    rank = len(shape)
    roi_in, scales_in, sizes_in = ctx.const(1, "roi"), ctx.const(2, "scales"), ctx.const(3, "sizes")
    roi = [0.0] * rank + [1.0] * rank
    if roi_in is not None and roi_in.size:
        r = roi_in.astype(np.float64).reshape(-1)
        for i, a in enumerate(axes):
            roi[a], roi[rank + a] = float(r[i]), float(r[len(axes) + i])
    scales, sizes = [1.0] * rank, list(shape)
    if sizes_in is not None and sizes_in.size:
        for i, a in enumerate(axes):
            sizes[a] = int(sizes_in.reshape(-1)[i])
            scales[a] = sizes[a] / shape[a] if shape[a] else 1.0
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            s = pick(scales[a] for a in axes)
            for a in axes:
                scales[a], sizes[a] = s, int(s * shape[a] + 0.5)
    elif scales_in is not None and scales_in.size:
        for i, a in enumerate(axes):
            scales[a] = float(scales_in.astype(np.float64).reshape(-1)[i])
            sizes[a] = int(math.floor(shape[a] * scales[a]))
    else:
        raise ValueError("Resize needs scales or sizes")
    return scales, sizes, roi


@converter("Resize")
def _resize(ctx: NodeContext) -> list[Handle | None]:
    if ctx.opset < 11:
        raise UnsupportedError("Resize before opset 11 (its scales-only form)")
    x = ctx.need(0, "X")
    mode = ctx.attr("mode", "nearest")
    transform = ctx.attr("coordinate_transformation_mode", "half_pixel")
    nearest_mode = ctx.attr("nearest_mode", "round_prefer_floor")
    antialias = bool(ctx.attr("antialias", 0))
    if antialias and mode == "nearest":
        raise UnsupportedError("Resize with antialias in nearest mode (ONNX defines it for linear and cubic)")
    if mode not in TAPS or transform not in TRANSFORMS or nearest_mode not in NEAREST_MODES:
        raise UnsupportedError(f"Resize mode={mode!r}, coordinate_transformation_mode={transform!r}, "
                               f"nearest_mode={nearest_mode!r}")
    if mode != "nearest" and np_dtype(x).kind != "f":
        raise UnsupportedError(f"{mode} Resize of {describe(x)}: floating-point input only")
    rank = len(shape_of(x))
    axes = [norm_axis(a, rank) for a in (ctx.attr("axes") or range(rank))]
    scales, sizes, roi = _resize_plan(ctx, x, axes)
    ctx.check_size(sizes, np_dtype(x), "the output")
    y = x
    for a in axes:
        n_in = shape_of(y)[a]
        crop = transform == "tf_crop_and_resize" and (roi[a], roi[rank + a]) != (0.0, 1.0)
        if sizes[a] == n_in and math.isclose(scales[a], 1.0) and not crop:
            continue
        src, outside = source_coordinates(transform, sizes[a], n_in, scales[a], (roi[a], roi[rank + a]))
        y = resize_axis(ctx, y, a, mode, src, outside, float(ctx.attr("extrapolation_value", 0.0)),
                        nearest_mode=nearest_mode, cubic_a=float(ctx.attr("cubic_coeff_a", -0.75)),
                        exclude_outside=bool(ctx.attr("exclude_outside", 0)),
                        antialias_scale=scales[a] if antialias else None)
    return [y]


@converter("Upsample")
def _upsample(ctx: NodeContext) -> list[Handle | None]:
    """Upsample (opsets 7-9): asymmetric coordinates, nearest taking the lower position, or linear."""
    x = ctx.need(0, "X")
    scales_in = ctx.attr("scales") if ctx.opset < 9 else ctx.const(1, "scales")
    if scales_in is None:
        raise ValueError("Upsample needs scales")
    scales = [float(s) for s in np.asarray(scales_in, np.float64).reshape(-1)]
    mode = ctx.attr("mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise UnsupportedError(f"Upsample mode={mode!r}")
    if mode == "linear" and np_dtype(x).kind != "f":
        raise UnsupportedError(f"linear Upsample of {describe(x)}: floating-point input only")
    y = x
    for a, s in enumerate(scales):
        n_in = shape_of(y)[a]
        n_out = int(math.floor(n_in * s))
        if n_out == n_in and s == 1.0:
            continue
        src, _ = source_coordinates("asymmetric", n_out, n_in, s)
        y = resize_axis(ctx, y, a, mode, src, None, 0.0, nearest_mode="floor")
    return [y]
