"""Magnitude-pruning masks on a weight's [batch, N, K] GEMM view (see ir/sparsity.py).

Each function returns a boolean keep-mask of the view's shape, or a string saying why the
pattern does not fit the weight. Ties in magnitude are broken by position (stable sorts), so
the same weight always gives the same mask.
"""

from __future__ import annotations

import numpy as np

from ..ir.sparsity import block_norms


def _count(fraction: float, total: int) -> int:
    """How many of `total` units `fraction` asks for, rounded half up."""
    return min(total, int(np.floor(fraction * total + 0.5)))


def _drop_smallest(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Keep-mask over `scores` that drops the `fraction` with the smallest score."""
    flat = scores.reshape(-1)
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argsort(flat, kind="stable")[: _count(fraction, flat.size)]] = False
    return keep.reshape(scores.shape)


def unstructured_mask(view: np.ndarray, sparsity: float) -> np.ndarray:
    """Zero the fraction `sparsity` of elements with the smallest |w| (over the whole tensor)."""
    return _drop_smallest(np.abs(view.astype(np.float64)), sparsity)


def block_mask(view: np.ndarray, sparsity: float, bh: int, bw: int, name: str = "the weight",
               group_rows: int | None = None) -> np.ndarray | str:
    """Zero the fraction `sparsity` of bh x bw blocks with the smallest L2 norm.

    N and K must be multiples of the block (no padding); `group_rows` (rows per convolution
    group) must be too, so that no block straddles two groups.
    """
    _, n, k = view.shape
    what = f"block {bh}x{bw} not applied to {name}"
    if n % bh:
        return f"{what}: N={n} is not a multiple of {bh}"
    if k % bw:
        return f"{what}: K={k} is not a multiple of {bw}"
    if group_rows is not None and group_rows % bh:
        return f"{what}: its groups have {group_rows} output channels, not a multiple of {bh}"
    keep = _drop_smallest(block_norms(view, bh, bw), sparsity)
    return np.repeat(np.repeat(keep, bh, axis=1), bw, axis=2)


def nm_mask(view: np.ndarray, n: int, m: int, name: str = "the weight") -> np.ndarray | str:
    """Keep the n largest |w| of every m consecutive elements along K (K a multiple of m)."""
    b, rows, k = view.shape
    if k % m:
        return f"{n}:{m} not applied to {name}: K={k} is not a multiple of {m}"
    groups = np.abs(view.astype(np.float64)).reshape(-1, m)
    order = np.argsort(-groups, axis=1, kind="stable")[:, :n]
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, order, True, axis=1)
    return keep.reshape(b, rows, k)


def channel_mask(view: np.ndarray, sparsity: float) -> np.ndarray:
    """Zero the fraction `sparsity` of rows (output channels) with the smallest L2 norm."""
    norms = np.sqrt(np.square(view.astype(np.float64)).sum(axis=-1))
    return np.repeat(_drop_smallest(norms, sparsity)[..., None], view.shape[-1], axis=-1)
