"""How fast this host streams a product's weights: the bound of a memory-bound product (M of 1-16).

`read_bound_gops(m, k, n)` times a parallel read of k * n bytes (int8 weights; the read is an xor over 8-byte
words, which costs less than the read) that was read just before, as a compiled graph reads its weights on
each run, and returns the GOP/s a product of m x k x n would reach if it only read them: 2 * m * n * k over that
time. No int8 product that reads all its weights once can pass it.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import prange

from .measure import time_runs


@numba.njit(parallel=True, cache=True)
def xor_words(words: np.ndarray, parts: int) -> np.ndarray:
    """The xor of each of `parts` equal runs of `words` (u8 viewed as 8-byte words), one run a thread."""
    n = words.shape[0] // parts
    out = np.zeros(parts, np.uint64)
    for p in prange(parts):
        run = words[p * n:(p + 1) * n] if p < parts - 1 else words[p * n:]
        acc = np.uint64(0)
        for i in range(run.shape[0]):
            acc ^= run[i]
        out[p] = acc
    return out


@functools.cache
def stream_seconds(nbytes: int, repeats: int = 11) -> float:
    """Median seconds to read `nbytes` on Numba's threads (each a share), the buffer read once before (measured
    once per size and repeat count in a process)."""
    words = np.random.default_rng(0).integers(0, 2**63, max(1, nbytes // 8), dtype=np.uint64)
    parts = numba.get_num_threads()
    xor_words(words, parts)
    return time_runs(lambda: xor_words(words, parts), repeats, 2)[0] / 1e3


def read_bound_gops(m: int, k: int, n: int, repeats: int = 11) -> float:
    """GOP/s (2 * m * n * k per run) of a product that only reads its k * n int8 weights."""
    return 2.0 * m * n * k / stream_seconds(k * n, repeats) / 1e9
