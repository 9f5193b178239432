"""Streamed activation statistics for static quantization, and the clipping thresholds drawn from them.

Each observed value keeps its min, max, a histogram of |x| with `HIST_BINS` bins over [0, top) where
`top` is the next power of two above max|x| (so at least half the bins cover the data), and, when
asked, max|x| per channel of the last axis. When a batch raises max|x| past `top`, the histogram is
re-binned by summing groups of 2^k bins: bins are computed as floor(|x| * HIST_BINS / top) with a
power-of-two factor, so observing batches one after another, re-binning, and merging shards observed
apart all give the same counts. Memory is fixed per value, whatever the number of batches.

Thresholds (a clip T on |x|; the activation range becomes [max(lo, -T), min(hi, T)]):
minmax (no clip), percentile (the upper edge of the bin holding that percentile of |x|), entropy
(TensorRT: the T minimizing KL(P || Q) between the clipped histogram and its quantization to 128
levels, 256 for non-negative values) and mse (the T minimizing the expected squared error of u8
quantization over the histogram: step^2 / 12 inside the range, (|x| - T)^2 outside).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..ir.graph import Graph, Node

HIST_BINS = 2048
"""Bins of each |x| histogram."""

U8_STEPS = 255
"""Steps of the asymmetric u8 grid the activation range is cut into."""

SIGNED_LEVELS, UNSIGNED_LEVELS = 128, 256
"""Quantized levels of |x| for the entropy method: signed values get 128, non-negative ones 256."""


def _pow2_above(a: float) -> float:
    """The smallest power of two strictly above `a` (> 0)."""
    return math.ldexp(1.0, math.frexp(a)[1])


@dataclass
class TensorStats:
    """Streamed statistics of one value: min, max, |x| histogram over [0, top), optional per-channel max|x|."""

    lo: float = math.inf
    hi: float = -math.inf
    top: float = 0.0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, np.int64))
    channel_absmax: np.ndarray | None = None

    @property
    def count(self) -> int:
        """Elements observed."""
        return int(self.hist.sum())

    @property
    def nbytes(self) -> int:
        """Bytes held (fixed: it does not grow with the number of batches)."""
        return self.hist.nbytes + (0 if self.channel_absmax is None else self.channel_absmax.nbytes)

    def _regrid(self, top: float) -> None:
        """Coarsen the histogram to [0, top), `top` a power of two >= the current one."""
        if top <= self.top:
            return
        if self.top > 0:
            k = round(math.log2(top / self.top))
            self.hist = np.bincount(np.arange(HIST_BINS) >> k, weights=self.hist, minlength=HIST_BINS).astype(np.int64)
        self.top = top  # from top 0 only bin 0 (exact zeros) holds counts, and it stays bin 0

    def observe(self, a: np.ndarray, channels: bool = False) -> None:
        """Fold one batch in; `channels` also keeps max|x| per channel of the last axis."""
        if a.size == 0:
            return
        x = np.abs(a.astype(np.float64, copy=False))
        self.lo = min(self.lo, float(a.min()))
        self.hi = max(self.hi, float(a.max()))
        amax = float(x.max())
        if not math.isfinite(amax):
            raise ValueError("the value holds NaN or inf")
        if amax > 0:
            self._regrid(max(self.top, _pow2_above(amax)))
        idx = (x * (HIST_BINS / self.top)).astype(np.int64).reshape(-1) if self.top > 0 else np.zeros(x.size, np.int64)
        self.hist += np.bincount(idx, minlength=HIST_BINS)
        if channels and a.ndim >= 1:
            cm = x.reshape(-1, a.shape[-1]).max(axis=0)
            self.channel_absmax = cm if self.channel_absmax is None else np.maximum(self.channel_absmax, cm)

    def merge(self, other: TensorStats) -> TensorStats:
        """The statistics of both shards together (the same as observing every batch in one)."""
        out = TensorStats(min(self.lo, other.lo), max(self.hi, other.hi))
        top = max(self.top, other.top)
        for s in (self, other):
            c = TensorStats(top=s.top, hist=s.hist.copy())
            c._regrid(top)
            out.hist += c.hist
        out.top = top
        chans = [c for c in (self.channel_absmax, other.channel_absmax) if c is not None]
        if len(chans) == 2 and chans[0].shape != chans[1].shape:
            raise ValueError(f"per-channel maxima of {chans[0].shape[0]} and {chans[1].shape[0]} channels do not merge")
        out.channel_absmax = np.maximum(*chans) if len(chans) == 2 else (chans[0].copy() if chans else None)
        return out

    @property
    def centres(self) -> np.ndarray:
        """Centre of each bin."""
        return (np.arange(HIST_BINS) + 0.5) * (self.top / HIST_BINS)

    def clipped_range(self, threshold: float) -> tuple[float, float]:
        """[lo, hi] clipped to +-threshold."""
        if not math.isfinite(self.lo):
            raise ValueError("no calibration batch reached this value")
        return max(self.lo, -threshold), min(self.hi, threshold)


def percentile_threshold(s: TensorStats, percentile: float) -> float:
    """The upper edge of the bin holding the `percentile`-th percentile of |x|."""
    cdf = np.cumsum(s.hist)
    rank = math.ceil(percentile / 100.0 * cdf[-1] - 1e-9)  # the rank-th smallest |x| (1-based)
    i = int(np.searchsorted(cdf, max(rank, 1)))
    return min(i + 1, HIST_BINS) * s.top / HIST_BINS


def entropy_threshold(s: TensorStats, levels: int | None = None) -> float:
    """TensorRT's threshold: the upper edge i * width of the first i bins minimizing KL(P || Q).

    P: the first i bins with the counts beyond added to bin i-1; Q: the first i bins (without those
    outliers) merged into `levels` groups, each group's count spread evenly over its non-empty bins.
    """
    levels = levels or (UNSIGNED_LEVELS if s.lo >= 0 else SIGNED_LEVELS)
    hist = s.hist.astype(np.float64)
    used = int(np.flatnonzero(hist)[-1]) + 1 if hist.any() else 0
    width = s.top / HIST_BINS
    if used <= levels:
        return used * width
    tail = np.cumsum(hist[::-1])[::-1]  # tail[i] = sum(hist[i:])
    best, best_i = math.inf, used
    for i in range(levels, used + 1):
        p = hist[:i].copy()
        p[-1] += tail[i] if i < HIST_BINS else 0.0
        held = hist[:i] > 0
        starts = (np.arange(levels) * i) // levels
        sums = np.add.reduceat(hist[:i], starts)
        counts = np.add.reduceat(held.astype(np.float64), starts)
        per = np.divide(sums, counts, out=np.zeros(levels), where=counts > 0)
        q = np.repeat(per, np.diff(np.append(starts, i))) * held
        if np.any((p > 0) & (q == 0)):
            continue  # outliers folded into an empty bin: infinite divergence
        nz = p > 0
        p_n, q_n = p[nz] / p.sum(), q[nz] / q.sum()
        kl = float(np.sum(p_n * np.log(p_n / q_n)))
        if kl < best:
            best, best_i = kl, i
    return best_i * width


def mse_threshold(s: TensorStats) -> float:
    """The bin edge T minimizing the expected squared error of u8 quantization over [max(lo,-T), min(hi,T)]."""
    hist = s.hist.astype(np.float64)
    c = s.centres
    edges = np.arange(1, HIST_BINS + 1) * (s.top / HIST_BINS)
    # clipping error of the bins beyond each edge: sum n (c - T)^2 = S2 - 2 T S1 + T^2 S0 over the tail
    s0, s1, s2 = (np.append(np.cumsum((hist * c**k)[::-1])[::-1][1:], 0.0) for k in (0, 1, 2))
    clip = s2 - 2 * edges * s1 + edges**2 * s0
    span = np.minimum(s.hi, edges) - np.maximum(s.lo, -edges)
    inside = (np.cumsum(hist)) * (span / U8_STEPS) ** 2 / 12
    err = clip + inside
    used = int(np.flatnonzero(hist)[-1]) + 1 if hist.any() else 1
    return float(edges[int(np.argmin(err[:used]))])


THRESHOLDS: dict[str, Callable[[TensorStats, float], float]] = {
    "minmax": lambda s, pct: math.inf,
    "percentile": percentile_threshold,
    "entropy": lambda s, pct: entropy_threshold(s),
    "mse": lambda s, pct: mse_threshold(s),
}
"""Calibration method -> clip threshold on |x| (the second argument is the percentile option)."""


def activation_range(s: TensorStats, method: str, percentile: float = 99.99) -> tuple[float, float]:
    """The calibrated [lo, hi] of one value by `method` (a key of THRESHOLDS)."""
    return s.clipped_range(THRESHOLDS[method](s, percentile))


class CalibrationStats(dict[str, TensorStats]):
    """Streamed statistics by key (a value name, prefixed by a stage tag such as `smooth=0.5:`); saved as .npz."""

    def merge(self, other: Mapping[str, TensorStats]) -> CalibrationStats:
        """Both shards together: keys in either, statistics of keys in both merged."""
        out = CalibrationStats(self)
        for k, s in other.items():
            out[k] = out[k].merge(s) if k in out else s
        return out

    def save(self, path: str | Path) -> None:
        """Write every key's statistics to the .npz file `path`."""
        keys = sorted(self)
        arrays: dict[str, np.ndarray] = {
            "keys": np.array(keys, dtype=str),
            "lo": np.array([self[k].lo for k in keys]), "hi": np.array([self[k].hi for k in keys]),
            "top": np.array([self[k].top for k in keys]),
            "hist": np.stack([self[k].hist for k in keys]) if keys else np.zeros((0, HIST_BINS), np.int64),
        }
        for i, k in enumerate(keys):
            if self[k].channel_absmax is not None:
                arrays[f"channels_{i}"] = self[k].channel_absmax  # type: ignore[assignment]
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> CalibrationStats:
        """Read statistics written by `save`; errors name the file."""
        try:
            with np.load(path, allow_pickle=False) as z:
                out = cls()
                for i, k in enumerate(z["keys"].tolist()):
                    ch = z[f"channels_{i}"] if f"channels_{i}" in z else None
                    out[k] = TensorStats(float(z["lo"][i]), float(z["hi"][i]), float(z["top"][i]),
                                         z["hist"][i].astype(np.int64), ch)
                return out
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"calibration statistics file {str(path)!r} cannot be read: {e}") from e


def observe_values(graph: Graph, batches: Iterable[Mapping[str, np.ndarray]],
                   see: Callable[[str, np.ndarray], None]) -> None:
    """Run the reference interpreter on each batch, calling `see(name, array)` on every graph input the batch
    holds and every node output as it is computed (nothing is kept between calls)."""
    from ..backends.reference import REFERENCE_RULES  # the golden semantics (numpy)
    from ..ir.interpreter import Interpreter

    def hook(node: Node, outs: list[np.ndarray]) -> None:
        for v, a in zip(node.outputs, outs):
            see(v.name, a)

    interp = Interpreter(graph, REFERENCE_RULES)
    for batch in batches:
        for v in graph.inputs:
            if v.name in batch:
                see(v.name, batch[v.name])
        interp.run(batch, hook=hook)


def observe_graph(graph: Graph, batches: Iterable[Mapping[str, np.ndarray]], wanted: Mapping[str, str],
                  channels: Iterable[str] = ()) -> CalibrationStats:
    """Run the reference interpreter on each batch and stream the values named in `wanted` (name -> key).

    Values in `channels` also keep max|x| per channel of the last axis. Nothing is stored per batch.
    """
    stats = CalibrationStats({key: TensorStats() for key in wanted.values()})
    per_channel = set(channels)

    def see(name: str, a: np.ndarray) -> None:
        if name in wanted:
            try:
                stats[wanted[name]].observe(np.asarray(a), name in per_channel)
            except ValueError as e:
                raise ValueError(f"value {name!r}: {e}") from None

    observe_values(graph, batches, see)
    return stats


def gather_stats(graph: Graph, wanted: Mapping[str, str], channels: Iterable[str], known: CalibrationStats | None,
                 path: str, batches: Sequence[Mapping[str, np.ndarray]] | None) -> CalibrationStats:
    """Statistics for `wanted` (value name -> key): from `known`, then the .npz at `path` when it exists,
    observing on `batches` only the keys found in neither (values in `channels` need per-channel maxima).

    Returns everything known; with `path`, writes it there when something new was observed.
    """
    have = CalibrationStats(known or {})
    if path and Path(path).exists():
        for k, s in CalibrationStats.load(path).items():
            have.setdefault(k, s)
    per_channel = set(channels)
    missing = {name: key for name, key in wanted.items()
               if key not in have or (name in per_channel and have[key].channel_absmax is None)}
    if missing:
        if not batches:
            where = f" nor in {path!r}" if path else ""
            names = ", ".join(sorted(missing))
            raise ValueError(f"no calibration data, and no statistics for {names} in memory{where}")
        have.update(observe_graph(graph, batches, missing, per_channel & set(missing)))
        if path:
            have.save(path)
    return have
