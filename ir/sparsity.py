"""Sparsity patterns on arrays: the GEMM view of a weight, and whether an array honours its `SparsityInfo`.

A pattern is read on the weight as the matrix unit sees it, N x K (output features by reduction
length), with leading batch axes kept apart:

- `linear` weight [N, K]: as is;
- `conv2d` weight [O, I/groups, kh, kw]: [O, I/groups*kh*kw] (one row per output channel's filter);
- `matmul` constant B [..., K, N]: B transposed to [..., N, K];
- any other tensor: rows along its first axis, the other axes flattened (a vector is one row).

`density` is the fraction of the pattern's units that may hold a nonzero: elements
(`unstructured`), bh x bw blocks (`block`), rows, i.e. output channels (`channel`), and n/m for
`nm`. A tensor honours its annotation when it has at most that many nonzero units, every block
lies inside the matrix (or the matrix padded with zeros to whole blocks when the annotation says
`padded`), and each group of m consecutive K elements of an `nm` tensor holds at
most n nonzeros.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .types import SparsityInfo

_DENSITY_SLACK = 1e-9


def gemm_view(array: np.ndarray, op: str | None = None) -> np.ndarray:
    """The array as [batch, N, K] (see the module docstring); a copy only for matmul's transpose."""
    a = np.asarray(array)
    if op == "matmul" and a.ndim >= 2:
        t = np.swapaxes(a, -1, -2)
        return t.reshape(-1, t.shape[-2], t.shape[-1])
    if a.ndim == 0:
        return a.reshape(1, 1, 1)
    if a.ndim == 1:
        return a.reshape(1, 1, -1)
    return a.reshape(1, a.shape[0], -1)


def from_gemm_view(view: np.ndarray, shape: tuple[int, ...], op: str | None = None) -> np.ndarray:
    """Inverse of `gemm_view`: the [batch, N, K] array back in the tensor's own `shape`."""
    if op == "matmul" and len(shape) >= 2:
        t = view.reshape(shape[:-2] + (shape[-1], shape[-2]))
        return np.ascontiguousarray(np.swapaxes(t, -1, -2))
    return np.ascontiguousarray(view.reshape(shape))


def pad_view(view: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A [batch, N, K] view padded with zeros so that N is a multiple of `rows` and K of `cols` (no copy when it is)."""
    _, n, k = view.shape
    if n % rows == 0 and k % cols == 0:
        return view
    return np.pad(view, ((0, 0), (0, -n % rows), (0, -k % cols)))


def block_norms(view: np.ndarray, bh: int, bw: int) -> np.ndarray:
    """L2 norm of each bh x bw block of a [batch, N, K] view: [batch, N/bh, K/bw] (float64)."""
    b, n, k = view.shape
    sq = np.square(view.astype(np.float64)).reshape(b, n // bh, bh, k // bw, bw)
    return np.sqrt(sq.sum(axis=(2, 4)))


def describe(info: SparsityInfo) -> str:
    """Short name of a pattern: `2:4`, `block 4x4`, `unstructured`, `channel`, `dense`."""
    if info.pattern == "nm":
        return f"{info.n}:{info.m}"
    if info.pattern == "block" and info.block is not None:
        return f"block {info.block[0]}x{info.block[1]}"
    return info.pattern


def sparsity_violation(info: SparsityInfo, array: np.ndarray, op: str | None = None) -> str | None:
    """Why `array` (read through `gemm_view(array, op)`) breaks `info`, or None when it honours it."""
    if info.pattern == "dense" or np.asarray(array).size == 0:
        return None
    view = gemm_view(array, op)
    if info.padded:
        view = pad_view(view, *(info.block or (1, info.m or 1)))
    nz = view != 0
    _, n, k = view.shape
    name = describe(info)
    if info.pattern == "unstructured":
        kept, total, unit = int(nz.sum()), nz.size, "elements"
    elif info.pattern == "channel":
        rows = nz.any(axis=-1)
        kept, total, unit = int(rows.sum()), rows.size, "rows"
    elif info.pattern == "block":
        assert info.block is not None
        bh, bw = info.block
        if n % bh or k % bw:
            return f"{name} does not tile its {n}x{k} matrix view"
        blocks = block_norms(nz.astype(np.float64), bh, bw) > 0
        kept, total, unit = int(blocks.sum()), blocks.size, "blocks"
    else:  # nm
        assert info.n is not None and info.m is not None
        if k % info.m:
            return f"{name}: K={k} is not a multiple of {info.m}"
        per_group = nz.reshape(-1, info.m).sum(axis=1)
        worst = int(per_group.max())
        if worst > info.n:
            g = int(np.argmax(per_group))
            row, col = divmod(g * info.m, k)
            return (f"{name}: the group of {info.m} at row {row % n}, K {col}..{col + info.m - 1} "
                    f"holds {worst} nonzeros")
        return None
    if kept > total * (info.density + _DENSITY_SLACK):
        return (f"{name} with density {info.density:g} allows {math.floor(total * info.density + 1e-6)} "
                f"of {total} {unit} to be nonzero, but {kept} are")
    return None
