"""The GEMM's micro-kernels with an epilogue: packed or in-place A, and the dispatch over row counts.

The variants of `k_microkernel.make_fp32_ukernel` with `epilogue`: after the K loop they store the sums (added to
C's old values when accumulating), then apply the table epilogue (`ukernel_epilogue.register_epilogue`: bias,
batch norm or another per-column affine, a residual, ReLU, clip or GELU) to the tile they have just stored, still
in L1, so that a linear's bias or its residual costs no pass over the output. With mode EPI_NONE (every K block
but the last) the sums stay as stored.
Each also prefetches a line per k that the driver names (`k_gemm_packed.prefetch_plan`: the weights' next block),
so that weights that come from memory (a model's layers each read once per run) arrive while the present block
is multiplied.
"""

from __future__ import annotations

from .jit import helper
from .k_microkernel import MR, make_fp32_ukernel

ROW_COUNTS = (1, MR // 3, 2 * MR // 3, MR)
"""Rows of the micro-kernel variants: a row group of other height runs the next larger one (packed A)."""
_PACKED = [make_fp32_ukernel(r, epilogue=True) for r in ROW_COUNTS]
uk_epi_one, uk_epi_third, uk_epi_two_thirds, uk_epi = _PACKED
"""C[rows, NR] (+)= A panel [kc][MR] (its first 1, MR/3, 2*MR/3 or MR rows) @ B rows [kc][NR], then the epilogue."""
_STRIDED = [make_fp32_ukernel(r, strided_a=True, epilogue=True) for r in ROW_COUNTS[1:]]
uk_epi_strided_third, uk_epi_strided_two_thirds, uk_epi_strided = _STRIDED
"""The same with A read in place, A[i, k] at a[a_off + k * a_k + i * a_i] (MR/3, 2*MR/3 or MR rows)."""
uk_epi_row = make_fp32_ukernel(1, a_stride=1, epilogue=True)
"""The same for one row of x read in place (kc consecutive values)."""


@helper
def microkernel_rows_epilogue(cw, kc, ap, a_off, b, b_off, ldb, c, c_off, ldc, accumulate,  # type: ignore
                              ep, ep_off, mode, res, res_off, ldr, residual, pf, pf_off, pf_step):
    """The micro-kernel with epilogue and prefetch on the first cw rows of an A panel: 1, MR/3, 2*MR/3 or all MR
    rows, the fewest that cover cw (only a C of exactly cw rows may take an epilogue: the others write rows past
    it)."""
    if cw == 1:
        uk_epi_one(kc, ap, a_off, b, b_off, ldb, c, c_off, ldc, accumulate, ep, ep_off, mode, res, res_off, ldr,
                   residual, pf, pf_off, pf_step)
    elif cw <= MR // 3:
        uk_epi_third(kc, ap, a_off, b, b_off, ldb, c, c_off, ldc, accumulate, ep, ep_off, mode, res, res_off, ldr,
                     residual, pf, pf_off, pf_step)
    elif cw <= 2 * MR // 3:
        uk_epi_two_thirds(kc, ap, a_off, b, b_off, ldb, c, c_off, ldc, accumulate, ep, ep_off, mode, res, res_off,
                          ldr, residual, pf, pf_off, pf_step)
    else:
        uk_epi(kc, ap, a_off, b, b_off, ldb, c, c_off, ldc, accumulate, ep, ep_off, mode, res, res_off, ldr, residual,
               pf, pf_off, pf_step)


@helper
def microkernel_in_place_epilogue(cw, kc, x, x_off, ldx, b, b_off, ldb, c, c_off, ldc, accumulate,  # type: ignore
                                  ep, ep_off, mode, res, res_off, ldr, residual, pf, pf_off, pf_step):
    """The micro-kernel with epilogue and prefetch on cw rows of a matrix read in place, row i's k-th value at
    x[x_off + i * ldx + k]: cw is 1, MR/3, 2*MR/3 or MR (`exact_rows`), so no row past them is read."""
    if cw == 1:
        uk_epi_row(kc, x, x_off, b, b_off, ldb, c, c_off, ldc, accumulate, ep, ep_off, mode, res, res_off, ldr,
                   residual, pf, pf_off, pf_step)
    elif cw == MR // 3:
        uk_epi_strided_third(kc, x, x_off, 1, ldx, b, b_off, ldb, c, c_off, ldc, accumulate, ep, ep_off, mode, res,
                             res_off, ldr, residual, pf, pf_off, pf_step)
    elif cw == 2 * MR // 3:
        uk_epi_strided_two_thirds(kc, x, x_off, 1, ldx, b, b_off, ldb, c, c_off, ldc, accumulate, ep, ep_off, mode,
                                  res, res_off, ldr, residual, pf, pf_off, pf_step)
    else:
        uk_epi_strided(kc, x, x_off, 1, ldx, b, b_off, ldb, c, c_off, ldc, accumulate, ep, ep_off, mode, res,
                       res_off, ldr, residual, pf, pf_off, pf_step)
