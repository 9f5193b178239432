"""Magnitude-pruning masks on a weight's [batch, N, K] GEMM view (see ir/sparsity.py).

Each function returns a boolean keep-mask of the view's shape, or a string saying why the
pattern does not fit the weight. Ties in magnitude are broken by position (stable sorts), so
the same weight always gives the same mask.
"""

from __future__ import annotations

import numpy as np

from ..ir.sparsity import block_norms, pad_view


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
               group_rows: int | None = None, pad: bool = False) -> np.ndarray | str:
    """Zero the fraction `sparsity` of bh x bw blocks with the smallest L2 norm.

    N and K must be multiples of the block unless `pad` (then the blocks tile the view padded
    with zeros, and the edge blocks are partial); `group_rows` (rows per convolution group) must
    be a multiple of bh, so that no block straddles two groups.
    """
    _, n, k = view.shape
    what = f"block {bh}x{bw} not applied to {name}"
    if n % bh and not pad:
        return f"{what}: N={n} is not a multiple of {bh} (pad=true pads it)"
    if k % bw and not pad:
        return f"{what}: K={k} is not a multiple of {bw} (pad=true pads it)"
    if group_rows is not None and group_rows % bh:
        return f"{what}: its groups have {group_rows} output channels, not a multiple of {bh}"
    keep = _drop_smallest(block_scores(view, bh, bw), sparsity)
    return np.repeat(np.repeat(keep, bh, axis=1), bw, axis=2)[:, :n, :k]


def block_scores(view: np.ndarray, bh: int, bw: int) -> np.ndarray:
    """L2 norm of each bh x bw block of the view padded with zeros to whole blocks."""
    return block_norms(pad_view(view, bh, bw), bh, bw)


def nm_mask(view: np.ndarray, n: int, m: int, name: str = "the weight", pad: bool = False) -> np.ndarray | str:
    """Keep the n largest |w| of every m consecutive elements along K (K a multiple of m, or padded with zeros)."""
    b, rows, k = view.shape
    if k % m and not pad:
        return f"{n}:{m} not applied to {name}: K={k} is not a multiple of {m} (pad=true pads it)"
    padded = pad_view(view, 1, m)
    groups = np.abs(padded.astype(np.float64)).reshape(-1, m)
    order = np.argsort(-groups, axis=1, kind="stable")[:, :n]
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, order, True, axis=1)
    return keep.reshape(padded.shape)[:, :, :k]


def channel_mask(view: np.ndarray, sparsity: float) -> np.ndarray:
    """Zero the fraction `sparsity` of rows (output channels) with the smallest L2 norm."""
    return np.repeat(_drop_smallest(row_scores(view), sparsity)[..., None], view.shape[-1], axis=-1)


def row_scores(view: np.ndarray) -> np.ndarray:
    """L2 norm of each row (output channel) of the view."""
    return np.sqrt(np.square(view.astype(np.float64)).sum(axis=-1))


def global_fractions(scores: list[np.ndarray], unit_sizes: list[int], sparsity: float) -> list[float]:
    """One threshold over every layer: the fraction of each layer's units to drop so that, ranked together by
    score, the smallest units holding `sparsity` of all elements go (each layer then drops its own smallest)."""
    flat = np.concatenate([s.reshape(-1) for s in scores])
    sizes = np.concatenate([np.full(s.size, u, dtype=np.float64) for s, u in zip(scores, unit_sizes)])
    owner = np.concatenate([np.full(s.size, i) for i, s in enumerate(scores)])
    order = np.argsort(flat, kind="stable")
    budget = sparsity * sizes.sum()
    cut = int(np.searchsorted(np.cumsum(sizes[order]), budget + 0.5 * sizes[order].min(), side="right"))
    dropped = np.bincount(owner[order[:cut]], minlength=len(scores))
    return [float(d) / s.size for d, s in zip(dropped, scores)]
