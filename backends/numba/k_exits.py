"""Compiled exit criteria: the fire mask of max-prob, entropy and margin exits in one Numba call per exit.

Each follows the reference (`backends/reference/exits.py`) operation by operation: the row's softmax in f64
(max subtracted, exp, a sum in numpy's pairwise order, division) rounded to f32; entropy and margin in f64 from
that f32 softmax. No fast-math flags, so no reassociation. The one difference left is `exp` and `log`, which
numpy and LLVM take from different math libraries (both within one unit in the last place): a row whose score
lies within a few f64 units of the threshold's boundary may fire on one backend and not on the other.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from .jit import JIT_OPTIONS

PAIRWISE_BLOCK = 128
"""numpy's PW_BLOCKSIZE: pairwise summation splits runs longer than this in two."""

PAIRWISE_LANES = 8
"""numpy's pairwise summation keeps this many partial sums within a block."""


PAIRWISE_DEPTH = 64
"""Stack entries of the iterative pairwise sum: enough for any run length that fits in memory."""

TASK_SUM, TASK_ADD = 0, 1
"""Pairwise-sum stack entries: sum a run (split it when longer than a block), or add the last two partial sums."""


@numba.njit(**JIT_OPTIONS)
def block_sum(a, lo, n):  # type: ignore[no-untyped-def]
    """Sum of a[lo:lo + n], n <= PAIRWISE_BLOCK, in numpy's order: eight partial sums, then the tail."""
    if n < PAIRWISE_LANES:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = PAIRWISE_LANES
    end = n - n % PAIRWISE_LANES
    while i < end:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += PAIRWISE_LANES
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@numba.njit(**JIT_OPTIONS)
def pairwise_sum(a, lo, n):  # type: ignore[no-untyped-def]
    """Sum of a[lo:lo + n] (f64) in the order numpy's add.reduce sums a contiguous run (its recursion, unrolled:
    Numba's cache cannot hold recursive functions)."""
    if n <= PAIRWISE_BLOCK:
        return block_sum(a, lo, n)
    tasks = np.empty((PAIRWISE_DEPTH, 3), np.int64)
    sums = np.empty(PAIRWISE_DEPTH, np.float64)
    nt, ns = 1, 0
    tasks[0, 0], tasks[0, 1], tasks[0, 2] = TASK_SUM, lo, n
    while nt:
        nt -= 1
        kind, start, length = tasks[nt, 0], tasks[nt, 1], tasks[nt, 2]
        if kind == TASK_ADD:
            ns -= 1
            sums[ns - 1] = sums[ns - 1] + sums[ns]
        elif length <= PAIRWISE_BLOCK:
            sums[ns] = block_sum(a, start, length)
            ns += 1
        else:
            half = length // 2
            half -= half % PAIRWISE_LANES
            tasks[nt, 0], tasks[nt, 1], tasks[nt, 2] = TASK_ADD, 0, 0
            tasks[nt + 1, 0], tasks[nt + 1, 1], tasks[nt + 1, 2] = TASK_SUM, start + half, length - half
            tasks[nt + 2, 0], tasks[nt + 2, 1], tasks[nt + 2, 2] = TASK_SUM, start, half
            nt += 3
    return sums[0]


@numba.njit(**JIT_OPTIONS)
def row_softmax(x, e, p):  # type: ignore[no-untyped-def]
    """p (f32) = softmax of row x as the softmax op computes it; e is f64 scratch of the row's length."""
    n = x.shape[0]
    mx = np.float64(x[0])
    for j in range(1, n):
        v = np.float64(x[j])
        if v > mx or np.isnan(v):
            mx = v
    for j in range(n):
        e[j] = np.exp(np.float64(x[j]) - mx)
    s = 0.0 + pairwise_sum(e, 0, n)
    for j in range(n):
        p[j] = np.float32(e[j] / s)


@numba.njit(**JIT_OPTIONS)
def fire_max_prob(head, threshold, out):  # type: ignore[no-untyped-def]
    """out[r] = max softmax(head[r]) >= threshold (f32 comparison)."""
    x = head.reshape((head.shape[0], head.size // head.shape[0]))
    n = x.shape[1]
    e, p = np.empty(n, np.float64), np.empty(n, np.float32)
    thr = np.float32(threshold)
    for r in range(x.shape[0]):
        row_softmax(x[r], e, p)
        out[r] = p.max() >= thr


@numba.njit(**JIT_OPTIONS)
def fire_entropy(head, threshold, out):  # type: ignore[no-untyped-def]
    """out[r] = entropy of softmax(head[r]) (f64, nats) <= threshold."""
    x = head.reshape((head.shape[0], head.size // head.shape[0]))
    n = x.shape[1]
    e, p = np.empty(n, np.float64), np.empty(n, np.float32)
    for r in range(x.shape[0]):
        row_softmax(x[r], e, p)
        for j in range(n):
            q = np.float64(p[j])
            e[j] = q * np.log(q if q > 0 else 1.0)
        out[r] = -(0.0 + pairwise_sum(e, 0, n)) <= threshold


@numba.njit(**JIT_OPTIONS)
def fire_margin(head, threshold, out):  # type: ignore[no-untyped-def]
    """out[r] = top1 - top2 of softmax(head[r]) (f64 of the f32 values) >= threshold."""
    x = head.reshape((head.shape[0], head.size // head.shape[0]))
    n = x.shape[1]
    e, p = np.empty(n, np.float64), np.empty(n, np.float32)
    for r in range(x.shape[0]):
        row_softmax(x[r], e, p)
        q = np.sort(p)
        out[r] = (np.float64(q[n - 1]) - np.float64(q[n - 2])) >= threshold


FIRE_KERNELS: dict[str, Callable[..., None]] = {
    "max-prob": fire_max_prob,
    "entropy": fire_entropy,
    "margin": fire_margin,
}
"""criterion -> compiled kernel(head, threshold, out); criteria absent here (patience, cosine) run the reference's
numpy code."""
