"""im2col with pixels as rows: patches[n*P + p, (c*kh + i)*kw + j] = x[n, c, ih, iw] (0 outside the image).

The layout a GEMM over the filter's view [O, C*kh*kw] reads as its x [M, K]: the block-sparse
convolution (rules_sparse.py) runs the BSR kernel on it, one row per output pixel.
"""

from __future__ import annotations

from numba import prange

from .geometry import DH, DW, KH, KW, PL, PT, SH, SW, W_OUT
from .jit import twin


@twin
def im2col_rows(x, geo, h_out, patches):  # type: ignore[no-untyped-def]
    """Fill patches [N*h_out*w_out, C*kh*kw] from x [N, C, H, W] with the window geometry `geo`."""
    nb, ci, h_in, w_in = x.shape
    kh, kw, w_out = geo[KH], geo[KW], geo[W_OUT]
    for t in prange(nb * h_out):
        n = t // h_out
        oh = t - n * h_out
        for ow in range(w_out):
            row = patches[t * w_out + ow]
            for c in range(ci):
                for i in range(kh):
                    ih = oh * geo[SH] - geo[PT] + i * geo[DH]
                    base = (c * kh + i) * kw
                    if ih < 0 or ih >= h_in:
                        for j in range(kw):
                            row[base + j] = 0.0
                        continue
                    xrow = x[n, c, ih]
                    for j in range(kw):
                        iw = ow * geo[SW] - geo[PL] + j * geo[DW]
                        row[base + j] = xrow[iw] if 0 <= iw < w_in else 0.0
