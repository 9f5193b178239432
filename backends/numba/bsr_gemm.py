"""Block-sparse (BSR) fp32 GEMM: y[M, N] = epilogue(x[M, K] @ W^T) for a pruned constant W [N, K].

`bsr_from_dense` converts W at compile time: BSR over bh x bw blocks (block rows over N, block
columns over K; N and K padded to whole blocks), then the layout the micro-kernel reads: panels
of NP output channels (NP = 32 or 16 floats on AVX-512, 16 or 8 on AVX2, the widest dividing bh),
each the list of K indices of its nonzero blocks (`kidx`) and one NP-wide row of weights per
index (`vals`). A panel that straddles block rows (bh < NP) takes the union of their blocks.

`bsr_gemm` packs x into A panels [K][MR] once per row block (x itself is read in place) and runs
`sparse_ukernels.bsr_ukernel` per (A panel, weight panel): the register tile of C accumulates over
every nonzero block of the panel and is stored once. Work items are (row block, group of panels),
groups balanced by nonzero count (`balanced_groups`), not by panel count. The epilogue runs once
per finished tile through `k_epilogue.epi_tile`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from .epilogue import epilogue_arrays
from .jit import cdiv, twin
from .k_data import pack_row_panels
from .k_epilogue import epi_tile
from .sparse_ukernels import Isa, PanelConfig, bsr_ukernel, panel_configs, resolve_isa

PANEL_OVERHEAD = 8
"""A panel costs its K rows plus this many (storing its C tile, starting its loop) when groups are balanced."""
A_BLOCK_BYTES = 512 * 1024
"""Row blocks are sized so that their packed A panels (rows x K floats) fit in this much of L2."""
MAX_BLOCK = 64
"""Largest block side accepted."""


@dataclass(frozen=True)
class BSRWeight:
    """A [N, K] weight as BSR blocks and as the micro-kernel's panels.

    BSR: `indptr` [N/bh + 1] (block rows over N), `indices` (block column of each nonzero
    block, over K), `blocks` [nnzb, bh, bw]. Panels: panel p of `np_` channels owns weight rows
    t in [pptr[p], pptr[p+1]) of `vals` [T, np_] and `kidx` [T] (their K indices).
    """

    name: str
    shape: tuple[int, int]
    block: tuple[int, int]
    indptr: np.ndarray
    indices: np.ndarray
    blocks: np.ndarray
    config: PanelConfig
    pptr: np.ndarray
    kidx: np.ndarray
    vals: np.ndarray

    @property
    def np_(self) -> int:
        """Output channels per panel."""
        return self.config.np_

    @property
    def panels(self) -> int:
        """Number of panels (ceil(N / np_))."""
        return self.pptr.shape[0] - 1

    @property
    def density(self) -> float:
        """Fraction of the bh x bw blocks (of the padded matrix) that are kept."""
        nbr, nbc = cdiv(self.shape[0], self.block[0]), cdiv(self.shape[1], self.block[1])
        return self.indices.shape[0] / max(1, nbr * nbc)

    def to_dense(self) -> np.ndarray:
        """W [N, K] rebuilt from the panels the kernel reads."""
        n, k = self.shape
        out = np.zeros((self.panels * self.np_, k), np.float32)
        for p in range(self.panels):
            t0, t1 = self.pptr[p], self.pptr[p + 1]
            out[p * self.np_:(p + 1) * self.np_, self.kidx[t0:t1]] = self.vals[t0:t1].T
        return out[:n]

    def blocks_to_dense(self) -> np.ndarray:
        """W [N, K] rebuilt from the BSR blocks."""
        (n, k), (bh, bw) = self.shape, self.block
        nbr, nbc = cdiv(n, bh), cdiv(k, bw)
        out = np.zeros((nbr, nbc, bh, bw), np.float32)
        rows = np.repeat(np.arange(nbr), np.diff(self.indptr))
        out[rows, self.indices] = self.blocks
        return out.transpose(0, 2, 1, 3).reshape(nbr * bh, nbc * bw)[:n, :k]


def _panel_config(bh: int, isa: Isa) -> PanelConfig:
    """The widest tile of `isa` whose panel width divides bh, else the narrowest (panels span block rows)."""
    confs = panel_configs(isa)
    return next((c for c in confs if bh % c.np_ == 0), confs[-1])


def bsr_from_dense(w: np.ndarray, block: tuple[int, int], name: str = "weight",
                   isa: Isa | str | None = None) -> BSRWeight:
    """Convert a dense (pruned) weight W [N, K] to a BSRWeight with bh x bw blocks (`isa`: the kernel path)."""
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"{name}: a BSR weight must be 2-D [N, K], got shape {w.shape}")
    bh, bw = (int(block[0]), int(block[1]))
    if not (1 <= bh <= MAX_BLOCK and 1 <= bw <= MAX_BLOCK):
        raise ValueError(f"{name}: block {bh}x{bw} must have sides in 1..{MAX_BLOCK}")
    if not np.issubdtype(w.dtype, np.floating):
        raise ValueError(f"{name}: a BSR weight must be floating point, got {w.dtype}")
    conf = _panel_config(bh, resolve_isa(isa))
    n, k = w.shape
    nbr, nbc = cdiv(n, bh), cdiv(k, bw)
    wp = np.zeros((nbr * bh, nbc * bw), np.float32)
    wp[:n, :k] = w
    tiles = wp.reshape(nbr, bh, nbc, bw).transpose(0, 2, 1, 3)
    mask = np.any(tiles != 0, axis=(2, 3))
    indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int64)
    brow, bcol = np.nonzero(mask)
    blocks = np.ascontiguousarray(tiles[brow, bcol])
    np_ = conf.np_
    panels = cdiv(n, np_)
    wn = np.zeros((panels * np_, k), np.float32)
    wn[:n] = w
    pptr, kidx, vals = [0], [], []
    for p in range(panels):
        br0, br1 = p * np_ // bh, min(nbr - 1, ((p + 1) * np_ - 1) // bh)
        cols = np.nonzero(mask[br0:br1 + 1].any(axis=0))[0]
        ks = (cols[:, None] * bw + np.arange(bw)[None, :]).ravel()
        ks = ks[ks < k]
        kidx.append(ks.astype(np.int32))
        vals.append(wn[p * np_:(p + 1) * np_, ks].T)
        pptr.append(pptr[-1] + ks.shape[0])
    return BSRWeight(name, (n, k), (bh, bw), indptr, bcol.astype(np.int32), blocks, conf,
                     np.array(pptr, np.int64), np.concatenate(kidx) if kidx else np.zeros(0, np.int32),
                     np.ascontiguousarray(np.concatenate(vals)) if vals else np.zeros((0, np_), np.float32))


def balanced_groups(pptr: np.ndarray, parts: int) -> np.ndarray:
    """Boundaries [g0=0, ..., panels] of at most `parts` groups of consecutive panels with even nonzero work."""
    panels = pptr.shape[0] - 1
    cost = np.diff(pptr) + PANEL_OVERHEAD
    cum = np.concatenate([[0], np.cumsum(cost)])
    targets = cum[-1] * np.arange(1, parts) / max(parts, 1)
    cuts = np.searchsorted(cum, targets, side="left")
    return np.unique(np.concatenate([[0], np.clip(cuts, 0, panels), [panels]])).astype(np.int64)


@dataclass(frozen=True)
class BSRSchedule:
    """How `bsr_gemm` splits one call: row blocks of `tm` rows, panel `groups`, scratch floats."""

    tm: int
    groups: np.ndarray
    scratch_floats: int

    @property
    def items(self) -> int:
        """Work items per row block (the number of panel groups)."""
        return self.groups.shape[0] - 1


def scratch_per_item(tm: int, k: int, config: PanelConfig) -> int:
    """Floats of scratch one work item needs: its A panels (tm rows padded to MR, by K) and a C tile."""
    return cdiv(max(tm, 1), config.mr) * config.mr * k + config.mr * config.np_


def bsr_schedule(bsr: BSRWeight, m: int, threads: int = 1) -> BSRSchedule:
    """Row block and panel groups for M rows on `threads` threads (1: the serial twin's schedule)."""
    k = bsr.shape[1]
    mr = bsr.config.mr
    tm_cap = max(mr, (A_BLOCK_BYTES // (4 * max(k, 1))) // mr * mr)
    tm = max(1, min(m, tm_cap))
    gm = cdiv(max(m, 1), tm)
    parts = 1 if threads <= 1 else (max(1, cdiv(2 * threads, gm)) if gm < 2 * threads else 1)
    groups = balanced_groups(bsr.pptr, min(parts, max(bsr.panels, 1)))
    items = gm * (groups.shape[0] - 1)
    return BSRSchedule(tm, groups, items * scratch_per_item(tm, k, bsr.config))


@twin
def bsr_gemm(x, cfg, mr, np_, pptr, kidx, vals, groups, out, tm, scratch, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    """out[M, N] = epilogue(x[M, K] @ W^T) for W in panels (cfg, mr, np_, pptr, kidx, vals of a BSRWeight).

    Work items are (row block of tm rows, panel group g: panels groups[g]..groups[g+1]); each packs
    its rows of x into its scratch slice (`scratch_per_item` floats) and writes whole tiles.
    """
    m_all, k_all = x.shape
    n_all = out.shape[1]
    ng = groups.shape[0] - 1
    gm = (m_all + tm - 1) // tm
    per = ((tm + mr - 1) // mr) * mr * k_all + mr * np_
    for t in prange(gm * ng):
        i = t // ng
        g = t - i * ng
        m0 = i * tm
        m1 = min(m_all, m0 + tm)
        ap = scratch[t * per:t * per + per - mr * np_]
        ctmp = scratch[t * per + per - mr * np_:t * per + per]
        pack_row_panels(x, m0, m1, mr, ap)
        nmp = (m1 - m0 + mr - 1) // mr
        for p in range(groups[g], groups[g + 1]):
            n0 = p * np_
            nw = min(np_, n_all - n0)
            for mp in range(nmp):
                r0 = m0 + mp * mr
                mw = min(mr, m1 - r0)
                if mw == mr and nw == np_:
                    bsr_ukernel(cfg, mr, kidx, pptr[p], pptr[p + 1], ap, mp * k_all * mr, vals, out,
                                r0 * n_all + n0, n_all)
                else:
                    rows = 1 if mw == 1 else (mr // 4 if mw <= mr // 4 else (mr // 2 if mw <= mr // 2 else mr))
                    bsr_ukernel(cfg, rows, kidx, pptr[p], pptr[p + 1], ap, mp * k_all * mr, vals, ctmp, 0, np_)
                    for r in range(mw):
                        out[r0 + r][n0:n0 + nw] = ctmp[r * np_:r * np_ + nw]
        if stages.shape[0] > 0 and groups[g + 1] > groups[g]:
            epi_tile(out, m0, m1, groups[g] * np_, min(n_all, groups[g + 1] * np_), stages, vecs, params, res)


def run_bsr(x: np.ndarray, bsr: BSRWeight, out: np.ndarray | None = None, threads: int = 1,
            stages: np.ndarray | None = None, vecs: np.ndarray | None = None,
            params: np.ndarray | None = None, res: np.ndarray | None = None) -> np.ndarray:
    """y = epilogue(x @ W^T) for a BSRWeight, scheduling and scratch made here (tests and benchmarks)."""
    x = np.ascontiguousarray(x, np.float32)
    m, k = x.shape
    if k != bsr.shape[1]:
        raise ValueError(f"{bsr.name}: x has {k} columns, the weight {bsr.shape} needs {bsr.shape[1]}")
    out = np.empty((m, bsr.shape[0]), np.float32) if out is None else out
    if m == 0 or bsr.shape[0] == 0:
        return out
    sched = bsr_schedule(bsr, m, threads)
    scratch = np.empty(max(sched.scratch_floats, 1), np.float32)
    stages, vecs, params, res = epilogue_arrays(bsr.shape[0], stages, vecs, params, res)
    c = bsr.config
    bsr_gemm.call(threads > 1, x, c.code, c.mr, c.np_, bsr.pptr, bsr.kidx, bsr.vals, sched.groups, out, sched.tm,
                  scratch, stages, vecs, params, res, writes=(out, scratch))
    return out
