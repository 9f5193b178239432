"""Systolic-array timing (weight-, output- and input-stationary), the analytic model behind SCALE-Sim.

An R x C array computes a GEMM in folds. Weight-stationary: each fold pins an R x C block of the
weights (K rows by N columns): R cycles to load it, then M input vectors stream through with
R + C - 2 cycles of skew before the last partial sum leaves, so a fold takes 2R + C + M - 2
cycles and there are ceil(K/R) * ceil(N/C) folds. Output-stationary: each fold pins an R x C
block of outputs (M by N) and streams K operand pairs: R + C + K - 2 cycles, ceil(M/R) * ceil(N/C)
folds. Input-stationary mirrors weight-stationary with M and N exchanged. SCALE-Sim counts
cycles from 0, hence the final -1. Nothing here overlaps one fold's loading with the previous
fold's draining, as SCALE-Sim does not either; that makes small-M GEMMs pessimistic by up to
about R cycles per fold relative to arrays with double-buffered weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DATAFLOWS = ("ws", "os", "is")


@dataclass(frozen=True)
class SystolicResult:
    """Cycles of one GEMM on P arrays and how well it used them."""

    cycles: int
    folds: int
    cycles_per_fold: int
    utilization: float  # useful MACs / (cycles x R x C x arrays)


def folds_and_fold_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> tuple[int, int]:
    """(number of folds, cycles per fold) for an M x K by K x N GEMM on one rows x cols array."""
    if min(m, n, k) < 1:
        return 0, 0
    if dataflow == "ws":
        return math.ceil(k / rows) * math.ceil(n / cols), 2 * rows + cols + m - 2
    if dataflow == "os":
        return math.ceil(m / rows) * math.ceil(n / cols), rows + cols + k - 2
    if dataflow == "is":
        return math.ceil(k / rows) * math.ceil(m / cols), 2 * rows + cols + n - 2
    raise ValueError(f"unknown dataflow {dataflow!r}; known: {', '.join(DATAFLOWS)}")


def systolic_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str = "ws",
                    arrays: int = 1, batch: int = 1) -> SystolicResult:
    """Cycles of `batch` GEMMs (M x K) @ (K x N) spread fold by fold over `arrays` arrays."""
    folds, per_fold = folds_and_fold_cycles(m, n, k, rows, cols, dataflow)
    total_folds = folds * batch
    if total_folds == 0:
        return SystolicResult(0, 0, 0, 0.0)
    rounds = math.ceil(total_folds / arrays)
    cycles = rounds * per_fold - 1
    util = batch * m * n * k / (cycles * rows * cols * arrays)
    return SystolicResult(cycles, total_folds, per_fold, util)
