"""ONNX's DFT (opsets 17 and 20) and STFT as products with constant DFT matrices.

A signal's real and imaginary parts (its last axis, 1 or 2 wide) are multiplied by cosine and sine matrices built
at import in float64 (forward: X[k] = sum_j x[j] e^(-2 pi i jk / n); inverse: e^(+...) / n; one-sided: the first
n // 2 + 1 bins; inverse one-sided: the real signal of a Hermitian spectrum, as numpy's irfft), along any axis but the
last, after the signal is cut or zero-padded to dft_length. STFT cuts [batch, length, 1 or 2] into frames of
frame_length every frame_step samples (a `gather` at constant indices), multiplies them by the window (constant or
at run time) and transforms each frame. A direct product costs n^2 per transform, not an FFT's n log n: fine for the
frame lengths of audio front ends, slow for long signals.
"""

from __future__ import annotations

import numpy as np

from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, norm_axis, np_dtype, shape_of
from .onnx_ops_shape import constant_pad, slice_handle


def _scalar(ctx: NodeContext, i: int, what: str) -> int | None:
    """Optional constant scalar input i as an int (None when absent)."""
    if ctx.input(i) is None:
        return None
    value = ctx.const(i, what)
    assert value is not None
    return int(np.asarray(value).reshape(-1)[0])


def _parts(ctx: NodeContext, x: Handle) -> tuple[Handle, Handle | None]:
    """(real, imaginary or None) of x [..., 1 or 2], each [...]."""
    shape = shape_of(x)
    if not shape or shape[-1] not in (1, 2):
        raise ValueError(f"a signal's last axis holds its real (and imaginary) part: 1 or 2 wide, got {describe(x)}")
    rank = len(shape)
    real = ctx.reshape(slice_handle(ctx, x, [0], [1], [rank - 1], [1]), list(shape[:-1]))
    if shape[-1] == 1:
        return real, None
    return real, ctx.reshape(slice_handle(ctx, x, [1], [2], [rank - 1], [1]), list(shape[:-1]))


def _fit(ctx: NodeContext, x: Handle, length: int) -> Handle:
    """x [..., m] cut or zero-padded to [..., length] along its last axis."""
    m = shape_of(x)[-1]
    if m > length:
        return slice_handle(ctx, x, [0], [length], [len(shape_of(x)) - 1], [1])
    return constant_pad(ctx, x, len(shape_of(x)) - 1, 0, length - m, 0.0) if m < length else x


def _matrices(rows: int, cols: int, n: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin) [rows, cols] of the angles 2 pi jk / n, times scale (computed in float64)."""
    angle = 2.0 * np.pi * np.outer(np.arange(rows), np.arange(cols)) / n
    return (np.cos(angle) * scale).astype(np.float32), (np.sin(angle) * scale).astype(np.float32)


def _transform(ctx: NodeContext, re: Handle, im: Handle | None, n: int, inverse: bool,
               onesided: bool) -> list[Handle]:
    """The DFT along the last axis of (re, im) [..., m]: [real, imaginary] parts ([real] for an inverse one-sided)."""
    if inverse and onesided:  # a Hermitian spectrum's first n // 2 + 1 bins -> n real samples (numpy's irfft)
        half = n // 2 + 1
        c, s = _matrices(half, n, n, 1.0 / n)  # [half, n]
        weight = np.full((half, 1), 2.0, np.float32)
        weight[0] = 1.0
        if n % 2 == 0:
            weight[-1] = 1.0
        out = ctx.op("matmul", _fit(ctx, re, half), c * weight)
        if im is not None:
            out = ctx.op("sub", out, ctx.op("matmul", _fit(ctx, im, half), s * weight))
        return [out]
    bins = n // 2 + 1 if onesided else n
    c, s = _matrices(n, bins, n, 1.0 / n if inverse else 1.0)
    re = _fit(ctx, re, n)
    sign = -1.0 if inverse else 1.0  # forward: (re + i im)(cos - i sin); inverse: (re + i im)(cos + i sin)
    out_re = ctx.op("matmul", re, c)
    out_im = ctx.op("neg", ctx.op("matmul", re, s)) if not inverse else ctx.op("matmul", re, s)
    if im is not None:
        im = _fit(ctx, im, n)
        out_re = ctx.op("add", out_re, ctx.op("matmul", im, s * np.float32(sign)))
        out_im = ctx.op("add", out_im, ctx.op("matmul", im, c))
    return [out_re, out_im]


def _stack(ctx: NodeContext, parts: list[Handle]) -> Handle:
    """[..., len(parts)]: the parts side by side on a new last axis."""
    cols = [ctx.reshape(p, [*shape_of(p), 1]) for p in parts]
    return cols[0] if len(cols) == 1 else ctx.op("concat", *cols, axis=len(shape_of(cols[0])) - 1)


def _float_signal(ctx: NodeContext, x: Handle) -> tuple[Handle, str | None]:
    name = np_dtype(x).name
    if name in ("float16", "bfloat16"):
        return ctx.op("cast", x, dtype="f32"), "f16" if name == "float16" else "bf16"
    if np_dtype(x) != np.float32:
        raise UnsupportedError(f"{ctx.node.op_type} of {describe(x)}: float32 and half precision only")
    return x, None


@converter("DFT")
def _dft(ctx: NodeContext) -> list[Handle | None]:
    x, back = _float_signal(ctx, ctx.need(0, "input"))
    rank = len(shape_of(x))
    axis = _scalar(ctx, 2, "axis") if ctx.opset >= 20 else int(ctx.attr("axis", 1))
    axis = norm_axis(-2 if axis is None else axis, rank)
    if axis == rank - 1:
        raise ValueError(f"DFT axis {axis} is the real / imaginary axis of {describe(x)}")
    inverse, onesided = bool(ctx.attr("inverse", 0)), bool(ctx.attr("onesided", 0))
    if onesided and not inverse and shape_of(x)[-1] != 1:
        raise ValueError("a one-sided DFT takes a real signal (last axis 1 wide)")
    n = _scalar(ctx, 1, "dft_length")
    if n is None:
        n = 2 * (shape_of(x)[axis] - 1) if inverse and onesided else shape_of(x)[axis]
    if n < 1:
        raise ValueError(f"dft_length {n} must be positive")
    perm = [d for d in range(rank - 1) if d != axis] + [axis, rank - 1]  # the transformed axis next to the last
    re, im = _parts(ctx, ctx.transpose(x, perm))
    y = _stack(ctx, _transform(ctx, re, im, n, inverse, onesided))
    y = ctx.transpose(y, list(np.argsort(perm)))
    return [ctx.op("cast", y, dtype=back) if back else y]


@converter("STFT")
def _stft(ctx: NodeContext) -> list[Handle | None]:
    x, back = _float_signal(ctx, ctx.need(0, "signal"))
    if len(shape_of(x)) != 3:
        raise ValueError(f"STFT takes a signal [batch, length, 1 or 2], got {describe(x)}")
    length = shape_of(x)[1]
    step = _scalar(ctx, 1, "frame_step")
    window = ctx.input(2)
    frame = _scalar(ctx, 3, "frame_length")
    if window is not None and (len(shape_of(window)) != 1 or (frame is not None and shape_of(window)[0] != frame)):
        raise ValueError(f"window {describe(window)} must be [frame_length]")
    frame = frame if frame is not None else (shape_of(window)[0] if window is not None else length)
    if step is None or step < 1 or not 1 <= frame <= length:
        raise ValueError(f"frame_step {step} must be positive and frame_length {frame} within the {length} samples")
    frames = 1 + (length - frame) // step
    index = (np.arange(frames)[:, None] * step + np.arange(frame)[None, :]).astype(np.int64)  # [frames, frame]
    cut = ctx.op("gather", x, index, axis=1)  # [batch, frames, frame, c]
    if window is not None:
        w, _ = _float_signal(ctx, window)
        cut = ctx.op("mul", cut, ctx.reshape(w, [1, 1, frame, 1]))
    re, im = _parts(ctx, cut)
    onesided = bool(ctx.attr("onesided", 1))
    if onesided and im is not None:
        raise ValueError("a one-sided STFT takes a real signal (last axis 1 wide)")
    y = _stack(ctx, _transform(ctx, re, im, frame, False, onesided))  # [batch, frames, bins, 2]
    return [ctx.op("cast", y, dtype=back) if back else y]
