"""GPTQ (Frantar et al., ICLR 2023): weight rounding that compensates each rounding error on the weights not yet
rounded, weighted by the layer's inputs.

For a linear layer y = W x, the squared output error over calibration inputs X (rows) is
tr(dW H dW^T) with H = X^T X, the sum of x x^T over every input row. GPTQ rounds the columns of W (input
features) one at a time; after rounding column k, it spreads the error over the columns after k through
the inverse of H restricted to them (a row of its upper Cholesky factor), so later roundings absorb it. The
result is the symmetric grid of round to nearest (scale = max|w| / qmax per output channel, or per group
of `group_size` columns, taken when the group is reached, from the weights as updated so far), with
different grid points chosen. Columns go in their own order (GPTQ's act-order, tried here with static
groups, gave lower MiniLM cosines).

`input_gram` streams H per layer from calibration batches on the reference backend (one K x K float64
matrix per layer input, nothing kept per batch). `output_error` gives tr(dW H dW^T), which the quantize
pass uses to keep GPTQ only where it beats round to nearest on the calibration inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ..ir.dtypes import DType
from ..ir.graph import Graph, Node
from .calibration import observe_values
from .quantize_numeric import QMAX, StoredWeight, dequantized, stored_grouped, stored_weight

DAMPING = 0.01
"""Added to H's diagonal, as a fraction of its mean, before inverting (GPTQ's percdamp)."""

BLOCK = 128
"""Columns rounded between two updates of the rest of the matrix (lazy batch updates, as GPTQ does)."""


def gptq_applies(n: Node) -> bool:
    """Whether GPTQ rounds `n`'s weight: a linear's, a matmul's 2-D B or an ungrouped conv2d's, when dense
    (GPTQ would fill pruned zeros)."""
    w = n.inputs[1] if len(n.inputs) > 1 else None
    if w is None or w.type.sparsity is not None:
        return False
    if n.op == "conv2d":
        return n.attrs["groups"] == 1 and n.inputs[0].type.rank == 4
    return n.op in ("linear", "matmul") and w.type.rank == 2 and n.inputs[0].type.rank >= (1 if n.op == "linear" else 2)


def gram_key(n: Node) -> str:
    """What a layer's Gram matrix is of: its input's rows, or for a conv2d its input's patches under its window."""
    if n.op != "conv2d":
        return n.inputs[0].name
    a = n.attrs
    kernel = "x".join(str(d) for d in n.inputs[1].type.shape[2:])
    return f"{n.inputs[0].name}@{kernel}/{a['strides']}/{a['pads']}/{a['dilations']}"


def conv_patches(x: np.ndarray, n: Node) -> np.ndarray:
    """The rows conv2d `n` multiplies its weight [O, C*kh*kw] with: one (c, i, j)-ordered patch per output pixel."""
    a = n.attrs
    kh, kw = n.inputs[1].type.shape[2:]
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = a["strides"], a["dilations"], a["pads"]
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    win = np.lib.stride_tricks.sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # [N, C, Ho, Wo, kh, kw]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1] * kh * kw)


def input_gram(graph: Graph, batches: Iterable[Mapping[str, np.ndarray]],
               layers: Iterable[Node]) -> dict[str, np.ndarray]:
    """H = sum over rows r of x_r x_r^T (float64) per `gram_key` of each layer: rows of its input over the last
    axis (linear, matmul), or its conv2d patches."""
    readers: dict[str, dict[str, Node]] = {}
    for n in layers:
        readers.setdefault(n.inputs[0].name, {})[gram_key(n)] = n
    gram: dict[str, np.ndarray] = {}

    def see(name: str, a: np.ndarray) -> None:
        for key, n in readers.get(name, {}).items():
            rows = conv_patches(a, n) if n.op == "conv2d" else np.asarray(a, np.float64).reshape(-1, a.shape[-1])
            gram[key] = gram.get(key, 0.0) + rows.T @ rows

    observe_values(graph, batches, see)
    return gram


def output_error(dw: np.ndarray, gram: np.ndarray) -> float:
    """Squared output error summed over the calibration rows, tr(dW H dW^T), for dW [N, K]."""
    return float(np.einsum("nk,kl,nl->", dw, gram, dw))


def _inverse_cholesky(gram: np.ndarray) -> np.ndarray:
    """The upper Cholesky factor of (H + damping)^-1, as GPTQ uses it."""
    h = gram.copy()
    k = h.shape[0]
    h[np.arange(k), np.arange(k)] += DAMPING * max(float(np.mean(np.diag(h))), 1e-12)
    inverse = np.linalg.inv(np.linalg.cholesky(h))  # L^-1, so H^-1 = L^-T L^-1
    return np.linalg.cholesky(inverse.T @ inverse).T


def gptq_round(w: np.ndarray, gram: np.ndarray, qmax: int, group_size: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(q [N, K] integers in [-qmax, qmax], scales [N, G] f32) for w [N, K]: one scale per output channel
    (G = 1) or per group of `group_size` columns (G = ceil(K / group_size)); w ~ q * scale of its group."""
    n, k = w.shape
    w = w.astype(np.float64).copy()
    dead = np.diag(gram) == 0  # an input that is always zero: its weights do not matter
    gram = gram.copy()
    gram[dead, dead] = 1.0
    w[:, dead] = 0.0
    u = _inverse_cholesky(gram)
    size = group_size or k
    scales = np.ones((n, -(-k // size)), np.float32)
    q = np.zeros((n, k), np.float64)
    for b0 in range(0, k, BLOCK):
        b1 = min(b0 + BLOCK, k)
        errors = np.zeros((n, b1 - b0))
        for j in range(b0, b1):
            if j % size == 0:  # the group's scale, from its weights as updated so far
                amax = np.abs(w[:, j:j + size]).max(axis=1)
                scales[:, j // size] = np.where(amax > 0, amax / qmax, 1.0)
            s = scales[:, j // size].astype(np.float64)
            q[:, j] = np.clip(np.rint(w[:, j] / s), -qmax, qmax)
            err = (w[:, j] - q[:, j] * s) / u[j, j]
            w[:, j + 1:b1] -= np.outer(err, u[j, j + 1:b1])
            errors[:, j - b0] = err
        w[:, b1:] -= errors @ u[b0:b1, b1:]
    return q, scales


@dataclass(frozen=True)
class GptqChoice:
    """The rounding kept for one weight: GPTQ's when it beats round to nearest on the calibration inputs."""

    weight: StoredWeight
    gptq: bool
    error: float  # squared output error over the calibration rows, tr(dW H dW^T), of the rounding kept
    nearest_error: float  # the same for round to nearest


def gptq_or_nearest(op: str, w: np.ndarray, nearest: StoredWeight, gram: np.ndarray, dtype: DType,
                    group_size: int = 0) -> GptqChoice:
    """GPTQ's rounding of a linear's W [N, K], a matmul's B [K, N] or a conv2d's W [O, C, kh, kw] (per output
    channel, or in groups of `group_size` along K) when its output error on the calibration inputs is below
    `nearest`'s, else `nearest`."""
    as_nk = {"linear": lambda a: a, "matmul": lambda a: a.T, "conv2d": lambda a: a.reshape(a.shape[0], -1)}[op]
    w_nk = as_nk(w).astype(np.float64)
    q, scale = gptq_round(w_nk, gram, QMAX[dtype.name], group_size)
    if op == "conv2d":
        made = stored_weight(w, q.reshape(w.shape), scale.reshape((-1,) + (1,) * (w.ndim - 1)), dtype, 0)
    elif group_size:
        linear = op == "linear"
        made = stored_grouped(w, q if linear else q.T, scale if linear else scale.T, dtype, 1 if linear else 0,
                              group_size)
    else:
        made = stored_weight(w, q if op == "linear" else q.T, scale if op == "linear" else scale.T, dtype,
                             0 if op == "linear" else 1)

    def error(sw: StoredWeight) -> float:
        return output_error(w_nk - as_nk(dequantized(sw)).astype(np.float64), gram)

    mine, theirs = error(made), error(nearest)
    return GptqChoice(made, True, mine, theirs) if mine < theirs else GptqChoice(nearest, False, theirs, theirs)
