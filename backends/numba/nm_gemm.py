"""N:M sparse fp32 GEMM: y[M, N] = epilogue(x[M, K] @ W^T) where every m consecutive K of a W row hold <= n nonzeros.

`nm_from_dense` compresses W [N, K] to `values` [N, K*n/m] and `indices` (their K positions,
int32), and interleaves them for the micro-kernel: groups of R output channels, [K*n/m][R] each.
`nm_gemm` packs x^T into panels [K][MV] (MV input rows per K index, zero-padded) once per row
block; `sparse_ukernels.nm_ukernel` then gathers, for each of R channels and each kept K, one
MV-wide vector of x^T and multiplies it by the broadcast weight, so the inner loop is vector FMAs
on gathered rows. Every FMA needs its own gathered load (no reuse of a loaded vector across
channels as in a dense tile), so on CPUs N:M seldom beats the dense micro-kernel; see
`bench/sparse_gemm.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from .epilogue import epilogue_arrays
from .jit import cdiv, twin
from .k_data import pack_row_panels
from .k_epilogue import epi_tile
from .sparse_ukernels import Isa, NMConfig, nm_config, nm_ukernel, resolve_isa


@dataclass(frozen=True)
class NMWeight:
    """A [N, K] weight with at most n nonzeros in every m consecutive K, compressed.

    `values` [N, K*n/m] and `indices` [N, K*n/m] (int32 K positions, ascending per row);
    `pvals` / `pidx` are the same interleaved for the kernel: [ceil(N/R), K*n/m, R] (padded
    channels hold zeros at K position 0).
    """

    name: str
    shape: tuple[int, int]
    n: int
    m: int
    values: np.ndarray
    indices: np.ndarray
    config: NMConfig
    pvals: np.ndarray
    pidx: np.ndarray

    @property
    def kc(self) -> int:
        """Kept K values per output channel (K * n / m)."""
        return self.values.shape[1]

    @property
    def channel_groups(self) -> int:
        """Groups of R output channels (ceil(N / R))."""
        return self.pvals.shape[0]

    def to_dense(self) -> np.ndarray:
        """W [N, K] rebuilt from the compressed values."""
        n_out, k = self.shape
        out = np.zeros((n_out, k), np.float32)
        np.put_along_axis(out, self.indices.astype(np.int64), self.values, axis=1)
        return out


def nm_from_dense(w: np.ndarray, n: int, m: int, name: str = "weight", isa: Isa | str | None = None) -> NMWeight:
    """Compress W [N, K] to N:M form; a ValueError naming the weight when it breaks the pattern."""
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"{name}: an N:M weight must be 2-D [N, K], got shape {w.shape}")
    if not 0 < n <= m:
        raise ValueError(f"{name}: N:M needs 0 < n <= m, got {n}:{m}")
    n_out, k = w.shape
    if k % m:
        raise ValueError(f"{name}: K = {k} is not a multiple of m = {m} for the {n}:{m} pattern")
    conf = nm_config(resolve_isa(isa))
    g = w.astype(np.float32).reshape(n_out, k // m, m)
    counts = np.count_nonzero(g, axis=2)
    if counts.size and counts.max() > n:
        row, grp = np.unravel_index(int(np.argmax(counts)), counts.shape)
        raise ValueError(f"{name}: does not satisfy {n}:{m} sparsity: row {row}, K {grp * m}..{grp * m + m - 1} "
                         f"holds {counts[row, grp]} nonzeros (at most {n} allowed)")
    order = np.argsort(g == 0, axis=2, kind="stable")[:, :, :n]
    pos = np.sort(order, axis=2)
    values = np.take_along_axis(g, pos, axis=2).reshape(n_out, -1)
    indices = (pos + (np.arange(k // m) * m)[None, :, None]).reshape(n_out, -1).astype(np.int32)
    r = conf.r
    groups = cdiv(n_out, r)
    kc = values.shape[1]
    pv = np.zeros((groups * r, kc), np.float32)
    pi = np.zeros((groups * r, kc), np.int32)
    pv[:n_out], pi[:n_out] = values, indices
    pvals = np.ascontiguousarray(pv.reshape(groups, r, kc).transpose(0, 2, 1))
    pidx = np.ascontiguousarray(pi.reshape(groups, r, kc).transpose(0, 2, 1))
    return NMWeight(name, (n_out, k), n, m, np.ascontiguousarray(values), indices, conf, pvals, pidx)


@dataclass(frozen=True)
class NMSchedule:
    """How `nm_gemm` splits one call: row blocks of `tm` rows, channel-group ranges, scratch floats."""

    tm: int
    groups: np.ndarray
    scratch_floats: int


def nm_scratch_per_item(tm: int, k: int, config: NMConfig) -> int:
    """Floats of scratch one work item needs: x^T panels (tm rows padded to MV, by K) and a C^T tile."""
    return cdiv(max(tm, 1), config.mv) * config.mv * k + config.r * config.mv


def nm_schedule(nm: NMWeight, m: int, threads: int = 1) -> NMSchedule:
    """Row block and channel-group ranges for M rows on `threads` threads (1: the serial twin's schedule)."""
    k = nm.shape[1]
    mv = nm.config.mv
    tm = max(1, min(m, max(mv, (512 * 1024 // (4 * max(k, 1))) // mv * mv)))
    gm = cdiv(max(m, 1), tm)
    parts = 1 if threads <= 1 or gm >= 2 * threads else min(nm.channel_groups, cdiv(2 * threads, gm))
    groups = np.unique(np.linspace(0, nm.channel_groups, parts + 1).round().astype(np.int64))
    return NMSchedule(tm, groups, gm * (groups.shape[0] - 1) * nm_scratch_per_item(tm, k, nm.config))


@twin
def nm_gemm(x, cfg, r_all, mv, pidx, pvals, groups, out, tm, scratch, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    """out[M, N] = epilogue(x[M, K] @ W^T) for W as an NMWeight's (config, pidx, pvals).

    Work items are (row block of tm rows, channel groups groups[g]..groups[g+1] of r_all channels);
    each packs its rows of x^T into its scratch slice (`nm_scratch_per_item` floats).
    """
    m_all, k_all = x.shape
    n_all = out.shape[1]
    kc = pvals.shape[1]
    ng = groups.shape[0] - 1
    gm = (m_all + tm - 1) // tm
    per = ((tm + mv - 1) // mv) * mv * k_all + r_all * mv
    for t in prange(gm * ng):
        i = t // ng
        g = t - i * ng
        m0 = i * tm
        m1 = min(m_all, m0 + tm)
        ap = scratch[t * per:t * per + per - r_all * mv]
        ct = scratch[t * per + per - r_all * mv:t * per + per]
        pack_row_panels(x, m0, m1, mv, ap)
        for cg in range(groups[g], groups[g + 1]):
            n0 = cg * r_all
            nw = min(r_all, n_all - n0)
            for mp in range((m1 - m0 + mv - 1) // mv):
                r0 = m0 + mp * mv
                mw = min(mv, m1 - r0)
                nm_ukernel(cfg, kc, pidx, pvals, cg * kc * r_all, ap, mp * k_all * mv, ct)
                for rr in range(mw):
                    o = out[r0 + rr]
                    for c in range(nw):
                        o[n0 + c] = ct[c * mv + rr]
        c0 = groups[g] * r_all
        c1 = min(n_all, groups[g + 1] * r_all)
        if stages.shape[0] > 0 and c1 > c0:
            epi_tile(out, m0, m1, c0, c1, stages, vecs, params, res)


def run_nm(x: np.ndarray, nm: NMWeight, out: np.ndarray | None = None, threads: int = 1,
           stages: np.ndarray | None = None, vecs: np.ndarray | None = None,
           params: np.ndarray | None = None, res: np.ndarray | None = None) -> np.ndarray:
    """y = epilogue(x @ W^T) for an NMWeight, scheduling and scratch made here (tests and benchmarks)."""
    x = np.ascontiguousarray(x, np.float32)
    m, k = x.shape
    if k != nm.shape[1]:
        raise ValueError(f"{nm.name}: x has {k} columns, the weight {nm.shape} needs {nm.shape[1]}")
    out = np.empty((m, nm.shape[0]), np.float32) if out is None else out
    if m == 0 or nm.shape[0] == 0:
        return out
    sched = nm_schedule(nm, m, threads)
    scratch = np.empty(max(sched.scratch_floats, 1), np.float32)
    stages, vecs, params, res = epilogue_arrays(nm.shape[0], stages, vecs, params, res)
    c = nm.config
    nm_gemm.call(threads > 1, x, c.code, c.r, c.mv, nm.pidx, nm.pvals, sched.groups, out, sched.tm, scratch,
                 stages, vecs, params, res, writes=(out, scratch))
    return out
