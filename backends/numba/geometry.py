"""Window geometry of convolutions and pooling: one int64 array that the kernels read by named index."""

from __future__ import annotations

import numpy as np

from ...ir.graph import Node
from .jit import helper

KH, KW, SH, SW, PT, PL, DH, DW, W_OUT, POINTWISE, B_PANELS, POOL_2X2 = range(12)
"""Indices into a geometry array: kernel height/width, strides, top/left pads, dilations, output width,
whether the convolution is pointwise (1x1, stride 1, no padding), how conv_shift reads its B panels, and
whether the convolution max-pools its output in 2x2 windows before storing it (a region's pool tail)."""
GEOMETRY_SIZE = 12

B_IN_PLACE, B_PACKED, B_MERGED = range(3)
"""conv_shift's B panels: read in place (row stride one channel), packed before use (many output channels
reuse each), or the taps merged into one K (few input channels; k_conv_pixels.conv_pixels runs those)."""


def window_geometry(node: Node, out_w: int, pointwise: bool = False, b_panels: int = B_IN_PLACE,
                    pool_2x2: bool = False) -> np.ndarray:
    """The geometry array of a conv2d or pooling node whose output rows are `out_w` wide (before any pool)."""
    a = node.attrs
    kernel = a["kernel"] if "kernel" in a else node.inputs[1].type.shape[2:]
    (kh, kw), (sh, sw), (pt, pl, _, _), (dh, dw) = kernel, a["strides"], a["pads"], a["dilations"]
    geo = np.zeros(GEOMETRY_SIZE, np.int64)
    geo[[KH, KW, SH, SW, PT, PL, DH, DW]] = kh, kw, sh, sw, pt, pl, dh, dw
    geo[W_OUT], geo[POINTWISE], geo[B_PANELS], geo[POOL_2X2] = out_w, int(pointwise), b_panels, int(pool_2x2)
    return geo


@helper
def ow_range(j, geo, w_in, w_out):  # type: ignore[no-untyped-def]
    """Output columns [lo, hi) whose input column ow*sw - pl + j*dw lies inside [0, w_in)."""
    off = j * geo[DW] - geo[PL]
    sw = geo[SW]
    lo = 0 if off >= 0 else (-off + sw - 1) // sw
    last = w_in - 1 - off
    hi = 0 if last < 0 else min(w_out, last // sw + 1)
    return lo, max(lo, hi)
