"""The structure of a weight's zeros, found from the array alone, and its size in a compressed format.

`detect_sparsity` reads the [batch, N, K] GEMM view (ir/sparsity.py) and names the most
structured pattern that explains the zeros: `channel` when whole rows are zero, `block` for the
largest bh x bw tiling whose all-zero blocks hold the zeros, `nm` for the smallest n/m such that
every m consecutive elements along K hold at most n nonzeros (n/m <= 1/2), else `unstructured` (or `dense` when
nothing is zero). "Hold the zeros" allows the few scattered zeros a float weight has anyway: at
least `COVERAGE` of them must lie in the pattern's zero units.

`compressed_bytes` sizes a view in the format that pattern's kernel reads: CSR for unstructured
(values, int32 column indices, int32 row pointers), BSR for blocks (kept blocks, an int32 block
column each, block-row pointers), N:M (the kept values plus log2(m) bits of position each), kept
rows for channels (their values plus an int32 row index each), the dense array otherwise. A
format that would be larger than the dense array is not chosen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .sparsity import block_norms, pad_view
from .types import SparsityInfo

COVERAGE = 0.99
"""Fraction of a weight's zeros a pattern's zero units must hold for the pattern to be reported."""

BLOCK_CANDIDATES = tuple(sorted(((h, w) for h in (32, 16, 8, 4, 2, 1) for w in (32, 16, 8, 4, 2, 1)
                                 if h * w >= 4 and h != 1), key=lambda b: (-b[0] * b[1], -b[0])))
"""Block shapes tried, largest area first (rows of 1 x w are N:M's business)."""

NM_GROUPS = (4, 8, 16)
"""Group lengths m tried for N:M."""

NM_MAX_DENSITY = 0.5
"""N:M is reported only at n/m <= this (what sparse tensor cores run; 15:16 would say nothing useful)."""

INDEX_BYTES = 4


@dataclass(frozen=True)
class Compressed:
    """A view's size stored densely and in its pattern's format."""

    format: str
    dense_bytes: int
    bytes: int

    @property
    def saved(self) -> int:
        """Bytes the compressed format saves over the dense array."""
        return self.dense_bytes - self.bytes


def _block_zero_cover(nz: np.ndarray, bh: int, bw: int) -> tuple[float, np.ndarray]:
    """Fraction of zeros inside all-zero blocks (padded view), and the alive-block mask."""
    real = pad_view(np.ones_like(nz, dtype=np.float64), bh, bw)
    alive = block_norms(pad_view(nz.astype(np.float64), bh, bw), bh, bw) > 0
    cells = np.rint(block_norms(real, bh, bw) ** 2)  # real cells per block
    zeros = nz.size - int(nz.sum())
    return float(cells[~alive].sum()) / zeros, alive


def detect_sparsity(view: np.ndarray) -> SparsityInfo:
    """The most structured pattern explaining the zeros of a [batch, N, K] view (module docstring)."""
    nz = view != 0
    zeros = nz.size - int(nz.sum())
    if zeros == 0:
        return SparsityInfo("dense", 1.0)
    _, n, k = view.shape
    rows = nz.any(axis=-1)
    if (~rows).sum() * k >= COVERAGE * zeros:
        return SparsityInfo("channel", float(rows.mean()))
    for bh, bw in BLOCK_CANDIDATES:
        if bh > n or bw > k:
            continue
        cover, alive = _block_zero_cover(nz, bh, bw)
        if cover >= COVERAGE:
            return SparsityInfo("block", float(alive.mean()), block=(bh, bw), padded=bool(n % bh or k % bw))
    best: tuple[float, int, int] | None = None
    for m in NM_GROUPS:
        if m > k:
            continue
        most = int(pad_view(nz, 1, m).reshape(-1, m).sum(axis=1).max())
        if most / m <= NM_MAX_DENSITY and (best is None or most / m < best[0]):
            best = (most / m, most, m)
    if best is not None:
        return SparsityInfo("nm", best[0], n=best[1], m=best[2], padded=bool(k % best[2]))
    return SparsityInfo("unstructured", float(nz.mean()))


def compressed_bytes(view: np.ndarray, info: SparsityInfo, value_bits: int) -> Compressed:
    """Bytes of `view` dense and in the format of `info`'s pattern (module docstring)."""
    b, n, k = view.shape
    dense = (view.size * value_bits + 7) // 8
    nz = view != 0
    if info.pattern == "unstructured":
        kept = int(nz.sum())
        fmt, size = "csr", (kept * value_bits + 7) // 8 + kept * INDEX_BYTES + b * (n + 1) * INDEX_BYTES
    elif info.pattern == "block" and info.block is not None:
        bh, bw = info.block
        alive = int((block_norms(pad_view(nz.astype(np.float64), bh, bw), bh, bw) > 0).sum())
        brows = -(-n // bh)
        fmt, size = "bsr", (alive * bh * bw * value_bits + 7) // 8 + alive * INDEX_BYTES + b * (brows + 1) * INDEX_BYTES
    elif info.pattern == "nm" and info.n is not None and info.m is not None:
        kept = b * n * (-(-k // info.m)) * info.n
        fmt, size = "nm", (kept * (value_bits + math.ceil(math.log2(info.m))) + 7) // 8
    elif info.pattern == "channel":
        rows = int(nz.any(axis=-1).sum())
        fmt, size = "rows", (rows * k * value_bits + 7) // 8 + rows * INDEX_BYTES
    else:
        fmt, size = "dense", dense
    return Compressed(fmt, dense, size) if size < dense else Compressed("dense", dense, dense)
