"""MaxPool's Indices output and MaxUnpool, as compositions of IR ops (the pair SegNet-style models use).

Indices: for each output cell the flat position of the window's largest value in the input, counted over the
whole tensor (n * C + c) * prod(spatial) + the spatial position, row-major (storage_order 0) or column-major (1),
ties to the first in window order, as ONNX's reference. The input padded with -inf is flattened per channel; one
`gather` of constant positions lays every window out, an `argmax` picks within it and a `gather` of a constant
table maps the pick to the input position. MaxUnpool scatters X into zeros of the output shape at those flat
positions (`scatter-elements` on the flattened tensor); an output_shape other than the inferred one is refused
(ONNX's reference evaluator and ONNX Runtime read the indices differently there).
"""

from __future__ import annotations

import math

import numpy as np

from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, np_dtype, shape_of
from .onnx_ops_shape import constant_pad


def window_tables(spatial: tuple[int, ...], out: tuple[int, ...], kernel: list[int], strides: list[int],
                  pads: list[int], dil: list[int], storage_order: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(padded flat position [outputs, window], input flat position [outputs, window], padded extent): the cells of
    every window in the input padded (and extended for ceil mode) to the extent, and where they lie unpadded."""
    r = len(spatial)
    begins = np.array(pads[:r])
    extent = [max(spatial[i] + pads[i] + pads[r + i], (out[i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1)
              for i in range(r)]
    o_idx = np.indices(out).reshape(r, -1)[:, :, None]
    k_idx = np.indices(kernel).reshape(r, -1)[:, None, :]
    p = o_idx * np.array(strides)[:, None, None] + k_idx * np.array(dil)[:, None, None]
    q = p - begins[:, None, None]
    valid = ((q >= 0) & (q < np.array(spatial)[:, None, None])).all(axis=0)  # every window has a valid cell: the
    # IR's pools refuse windows of padding only
    padded = np.ravel_multi_index(tuple(p), extent)
    unpadded = np.ravel_multi_index(tuple(np.where(valid, q, 0)), spatial, order="F" if storage_order else "C")
    return padded.astype(np.int64), unpadded.astype(np.int64), extent


def max_pool_indices(ctx: NodeContext, x: Handle, out: tuple[int, ...], kernel: list[int], strides: list[int],
                     pads: list[int], dil: list[int]) -> Handle:
    """MaxPool's Indices output for x [N, C, spatial...] and output spatial shape `out` (see the module docstring)."""
    xs = shape_of(x)
    n, c, spatial = xs[0], xs[1], tuple(xs[2:])
    r = len(spatial)
    storage_order = int(ctx.attr("storage_order", 0))
    padded, unpadded, extent = window_tables(spatial, out, kernel, strides, pads, dil, storage_order)
    xp = x
    for i in range(r):
        xp = constant_pad(ctx, xp, 2 + i, pads[i], extent[i] - spatial[i] - pads[i], -np.inf)
    windows = ctx.op("gather", ctx.reshape(xp, (n, c, math.prod(extent))), padded.reshape(-1), axis=2)
    n_out, n_k = padded.shape
    pick = ctx.op("argmax", ctx.reshape(windows, (n, c, n_out, n_k)), axis=3, keepdims=False)
    local = ctx.op("gather", unpadded.reshape(-1), ctx.op("add", pick, np.arange(n_out, dtype=np.int64) * n_k), axis=0)
    channel = (np.arange(n * c, dtype=np.int64) * math.prod(spatial)).reshape(n, c, 1)
    return ctx.reshape(ctx.op("add", local, channel), (n, c, *out))


@converter("MaxUnpool")
def _max_unpool(ctx: NodeContext) -> list[Handle | None]:
    x, idx = ctx.need(0, "X"), ctx.need(1, "I")
    xs = shape_of(x)
    r = len(xs) - 2
    kernel = list(ctx.attr("kernel_shape"))
    strides = list(ctx.attr("strides", [1] * r))
    pads = list(ctx.attr("pads", [0] * (2 * r)))
    if len(kernel) != r or len(strides) != r or len(pads) != 2 * r:
        raise ValueError(f"kernel_shape {kernel}, strides {strides} and pads {pads} do not fit {describe(x)}")
    if shape_of(idx) != xs:
        raise ValueError(f"indices {describe(idx)} must have the shape of X {describe(x)}")
    shape = tuple(xs[:2]) + tuple((xs[2 + i] - 1) * strides[i] + kernel[i] - pads[i] - pads[r + i] for i in range(r))
    given = ctx.const(2, "output_shape")
    if given is not None and tuple(int(d) for d in given.reshape(-1)) != shape:
        raise UnsupportedError(f"MaxUnpool to output_shape {[int(d) for d in given.reshape(-1)]} other than the "
                               f"inferred {list(shape)}: ONNX's reference evaluator scatters into the inferred shape "
                               "and pads it, ONNX Runtime and PyTorch index the given one")
    n_in = math.prod(xs)
    flat = ctx.op("scatter-elements", np.zeros(math.prod(shape), np_dtype(x)), ctx.reshape(idx, (n_in,)),
                  ctx.reshape(x, (n_in,)), axis=0)
    return [ctx.reshape(flat, shape)]
