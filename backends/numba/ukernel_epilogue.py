"""The leading stages of an epilogue that a micro-kernel applies itself: the blocked convolutions' to their
accumulators before they store them, the GEMM's to the tile they have just stored (in L1).

A micro-kernel's epilogue is a fixed chain: up to three per-column affine stages (ADD or MUL by a
vector), then, where the kernel takes one, a residual add, then at most one closing activation (RELU or CLIP;
GELU too in the GEMM's micro-kernels). `register_epilogue`
finds the longest leading part of an epilogue's stages that fits it and writes the per-column table the
micro-kernel reads (EPI_ROWS rows of NR floats per panel: m0, a0, m1, a1, m2, a2, lo, hi); the stages after it
run over the finished tile as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .k_epilogue import ADD, CLIP, GELU, MUL, RELU, RESIDUAL
from .k_microkernel import NR
from .ukernel_epilogue_ir import EPI_AFFINE, EPI_CLIP, EPI_GELU, EPI_NONE, EPI_RELU, EPI_ROWS

AFFINE_IN_REGISTERS = 3
"""Affine stages a micro-kernel applies: ((v * m0 + a0) * m1 + a1) * m2 + a2."""
CLOSING_MODES = {RELU: EPI_RELU, CLIP: EPI_CLIP, GELU: EPI_GELU}
"""The micro-kernels' mode for each closing activation stage."""


@dataclass(frozen=True)
class RegisterEpilogue:
    """The part of an epilogue a micro-kernel applies: its mode (EPI_*), table [panels, EPI_ROWS, NR], how many leading
    stages it covers, how many of the epilogue's vector rows those read, and whether it adds the residual."""

    mode: int
    table: np.ndarray
    stages: int
    vectors: int
    residual: bool

    def covers(self, total: int) -> bool:
        """Whether that part is the whole epilogue of `total` stages."""
        return self.mode != EPI_NONE and self.stages == total


def register_epilogue(codes: np.ndarray, vecs: np.ndarray, params: np.ndarray, n: int, panel: int = NR,
                      residual: bool = False, closing: tuple[int, ...] = (RELU, CLIP)) -> RegisterEpilogue:
    """The longest leading part of epilogue `codes` (vectors `vecs`, scalars `params`) over n columns in panels of
    `panel` columns that a micro-kernel applies itself; `residual`: whether the kernel adds a residual;
    `closing`: the activation stages it applies last. Covers no stage (EPI_NONE) when the chain starts otherwise."""
    panels = -(-n // panel)
    table = np.zeros((panels, EPI_ROWS, NR), np.float32)  # rows NR wide: a one-vector panel uses the first VW
    table[:, 0:6:2] = 1.0  # multipliers 1, addends 0: stages not there change nothing
    k = 0
    while k < min(AFFINE_IN_REGISTERS, len(codes)) and codes[k] in (ADD, MUL):
        vec = np.zeros(panels * panel, np.float32)
        vec[:n] = vecs[k, :n]
        table[:, 2 * k + int(codes[k] == ADD), :panel] = vec.reshape(panels, panel)
        k += 1
    affine = k
    with_res = residual and k < len(codes) and codes[k] == RESIDUAL
    k += with_res
    mode = EPI_AFFINE if k else EPI_NONE
    if k < len(codes) and int(codes[k]) in closing:
        mode = CLOSING_MODES[int(codes[k])]
        if codes[k] == CLIP:
            table[:, 6], table[:, 7] = params[k, 0], params[k, 1]
        k += 1
    if mode == EPI_NONE:
        return RegisterEpilogue(EPI_NONE, table, 0, 0, False)
    return RegisterEpilogue(mode, table, k, affine, bool(with_res))
