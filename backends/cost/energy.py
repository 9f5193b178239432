"""Default energy figures (Horowitz, ISSCC 2014, 45 nm) used where a target file gives none.

M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, Fig. 1.1.9:
8-bit add 0.03 pJ, 32-bit add 0.1 pJ, 16-bit fp add 0.4 pJ, 32-bit fp add 0.9 pJ,
8-bit mult 0.2 pJ, 32-bit mult 3.1 pJ, 16-bit fp mult 1.1 pJ, 32-bit fp mult 3.7 pJ;
64-bit SRAM read 10 pJ (8 KB), 20 pJ (32 KB), 100 pJ (1 MB); 64-bit DRAM read 1.3-2.6 nJ.
A multiply-accumulate costs one multiply and one add at the accumulator width. Figures for
formats the paper does not list (bf16, tf32, fp8, int4) are extrapolated and marked so.
"""

from __future__ import annotations

import math

HOROWITZ_OP_PJ: dict[str, float] = {
    "int8_add": 0.03,
    "int32_add": 0.1,
    "fp16_add": 0.4,
    "fp32_add": 0.9,
    "int8_mult": 0.2,
    "int32_mult": 3.1,
    "fp16_mult": 1.1,
    "fp32_mult": 3.7,
}
"""The figures as published (pJ per operation, 45 nm)."""

DEFAULT_MAC_PJ: dict[str, float] = {
    "fp32": 3.7 + 0.9,   # fp32 mult + fp32 add
    "tf32": 1.1 + 0.9,   # extrapolated: 10-bit mantissa multiply like fp16, fp32 accumulate
    "fp16": 1.1 + 0.4,   # fp16 mult + fp16 add
    "bf16": 1.1 + 0.9,   # extrapolated: multiply no larger than fp16's, fp32 accumulate
    "fp8": 0.2 + 0.4,    # extrapolated: 3-4 bit mantissa multiply ~ an 8-bit int multiply, fp16 add
    "int8": 0.2 + 0.1,   # 8-bit mult + 32-bit accumulate
    "int4": 0.05 + 0.1,  # extrapolated: multiplier energy ~ bits^2 (0.2 / 4), 32-bit accumulate
}
"""Energy of one multiply-accumulate by precision (pJ)."""

DEFAULT_OP_PJ: dict[str, float] = {
    "fp32": 0.9, "tf32": 0.9, "fp16": 0.4, "bf16": 0.4, "fp8": 0.4,
    "int8": 0.03, "int4": 0.03, "int32": 0.1, "int64": 0.2,
}
"""Energy of one vector (elementwise) operation by precision (pJ); an add is the unit."""

SRAM_PJ_PER_64BIT = ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))
"""(capacity in bytes, pJ per 64-bit read) points of the SRAM curve."""

DRAM_PJ_PER_64BIT = (1300.0, 2600.0)
"""Range of a 64-bit DRAM read (pJ)."""


def default_sram_pj_per_byte(capacity_bytes: int) -> float:
    """pJ per byte read from an SRAM of `capacity_bytes`, log-interpolated on Horowitz's points.

    Below 8 KB the 8 KB figure is used; above 1 MB the 1 MB figure (large on-chip memories are
    built from banks of at most about that size, so a read touches one bank).
    """
    pts = SRAM_PJ_PER_64BIT
    c = max(pts[0][0], min(pts[-1][0], capacity_bytes))
    for (c0, e0), (c1, e1) in zip(pts, pts[1:]):
        if c0 <= c <= c1:
            t = (math.log(c) - math.log(c0)) / (math.log(c1) - math.log(c0))
            return (e0 + t * (e1 - e0)) / 8.0
    return pts[-1][1] / 8.0  # pragma: no cover - c is clamped into the table


def default_dram_pj_per_byte() -> float:
    """pJ per byte read from DRAM: the middle of Horowitz's 1.3-2.6 nJ per 64-bit range."""
    return sum(DRAM_PJ_PER_64BIT) / 2 / 8.0
