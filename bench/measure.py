"""Measure one model under one configuration: quality against reference fp32 first, then latency, bytes, memory."""

from __future__ import annotations

import re
import time
import tracemalloc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends.cost import CostError, estimate
from ..ir import Graph
from ..ir.regions import region_anchor, region_body
from ..ir.sparsity import gemm_view
from ..ir.sparsity_detect import compressed_bytes, detect_sparsity
from .configs import Config, Runner
from .warmup import warm_up

MATRIX_READERS: dict[str, tuple[str, int]] = {
    "linear": ("linear", 1), "conv2d": ("conv2d", 1), "matmul": ("matmul", 1),
    "qlinear": ("linear", 3), "qconv2d": ("conv2d", 3), "qmatmul": ("matmul", 3),
}
"""Ops that read a weight: the op whose GEMM view the weight takes, and the weight's input index."""


FUSE_IN_PIPELINE = re.compile(r"(?:^|,)\s*fuse\s*(?:\{|,|$)")
"""Matches a pipeline string that runs the `fuse` pass itself."""


@dataclass
class Quality:
    """A configuration's outputs against reference fp32: cosine (min over batch rows), relative and absolute error."""

    cosine: float
    max_rel_err: float
    max_abs_err: float

    def violation(self, cfg: Config) -> str | None:
        """Why the outputs are outside `cfg`'s stated bound, or None."""
        if self.cosine < cfg.min_cosine:
            return f"cosine {self.cosine:.4f} to reference fp32 is below the bound {cfg.min_cosine}"
        if self.max_rel_err > cfg.max_rel_err:
            return f"max relative error {self.max_rel_err:.3g} to reference fp32 exceeds the bound {cfg.max_rel_err:g}"
        return None


@dataclass
class Row:
    """One (model, configuration) measurement; `error` set means it failed and carries no timing."""

    model: str
    config: str
    backend: str
    pipeline: str
    fused: bool
    median_ms: float | None = None
    spread_ms: float | None = None  # interquartile range of the timed runs
    repeats: int = 0
    speedup: float | None = None  # baseline median / this median
    predicted_speedup: float | None = None  # the same ratio from the cost model on cpu-host
    cosine: float | None = None
    max_rel_err: float | None = None
    max_abs_err: float | None = None
    metric: str = ""
    metric_value: float | None = None
    model_bytes: int = 0
    peak_memory_bytes: int | None = None
    compile_ms: float | None = None  # passes + lowering + kernel compilation (the peer's session creation)
    jit_ms: float | None = None  # kernel compilation alone (Numba)
    int8_path: str | None = None
    kernels: dict[str, Any] = field(default_factory=dict)  # layer -> the kernel the backend chose and why
    error: str | None = None
    estimate_ms: dict[str, float] = field(default_factory=dict)
    estimate_mj: dict[str, float] = field(default_factory=dict)
    estimate_bound: dict[str, str] = field(default_factory=dict)
    estimate_errors: dict[str, str] = field(default_factory=dict)


def time_runs(fn: Callable[[], Any], repeats: int, warmup: int) -> tuple[float, float]:
    """(median, interquartile range) in milliseconds of `fn` after `warmup` untimed calls.

    A short pause first lets other thread pools' spinning workers sleep; the warm-up lasts at least
    WARMUP_SECONDS (warmup.py), as in the peers' processes.
    """
    time.sleep(0.05)
    warm_up(fn, warmup)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return float(med), float(q3 - q1)


def compare(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> Quality:
    """Cosine (min over the leading axis, every output), max relative and absolute error of `got` vs `want`."""
    cos, rel, ab = 1.0, 0.0, 0.0
    for k, w in want.items():
        if k not in got:
            raise KeyError(f"output {k!r} is missing (got {', '.join(got)})")
        w64 = np.asarray(w, np.float64)
        g64 = np.asarray(got[k], np.float64).reshape(w64.shape)
        if w64.size == 0:
            continue
        if not np.all(np.isfinite(g64)):
            return Quality(float("nan"), float("inf"), float("inf"))
        a = g64.reshape(w64.shape[0] if w64.ndim else 1, -1)
        b = w64.reshape(a.shape)
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        both_zero = (na == 0) & (nb == 0)
        row_cos = np.where(both_zero, 1.0, np.sum(a * b, 1) / np.maximum(na * nb, 1e-300))
        cos = min(cos, float(np.min(row_cos)))
        diff = float(np.max(np.abs(g64 - w64)))
        ab = max(ab, diff)
        rel = max(rel, diff / max(float(np.max(np.abs(w64))), 1e-30))
    return Quality(cos, rel, ab)


def stored_bytes(graph: Graph) -> int:
    """Bytes of the graph's constants at their dtype; a matrix weight whose zeros form a pattern (annotated, or
    found as `sparsity-report` finds it) counts in that pattern's compressed format, whether or not the kernel
    that runs it reads that format (the int8 kernels read dense)."""
    readers: dict[int, str] = {}
    for n in graph.nodes:
        if n.op in MATRIX_READERS and len(n.inputs) > MATRIX_READERS[n.op][1]:
            view_op, i = MATRIX_READERS[n.op]
            readers.setdefault(id(n.inputs[i]), view_op)
        elif n.op == "fused":
            anchor = region_anchor(region_body(n))
            body_inputs = [id(v) for v in region_body(n).inputs]
            if anchor is None or anchor.op not in MATRIX_READERS:
                continue
            view_op, i = MATRIX_READERS[anchor.op]
            if len(anchor.inputs) > i and id(anchor.inputs[i]) in body_inputs:
                readers.setdefault(id(n.inputs[body_inputs.index(id(anchor.inputs[i]))]), view_op)
    total = 0
    for v in graph.constants:
        op = readers.get(id(v))
        if op is not None and v.data is not None:
            view = gemm_view(v.data, op)
            info = v.type.sparsity or detect_sparsity(view)
            total += compressed_bytes(view, info, v.type.dtype.bits).bytes
        else:
            total += v.type.nbytes
    return total


def peak_run_bytes(run: Callable[[], Any]) -> int:
    """Peak bytes Python and numpy allocate during one call of `run` (tracemalloc)."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def fill_estimates(row: Row, graph: Graph, targets: list[str]) -> None:
    """Price `graph` on every target into `row` (latency, energy, the bound of most of the latency); for a graph with
    early exits, the expected latency and energy over the exit probabilities its `early-exit` pass wrote."""
    for t in targets:
        try:
            table = estimate(graph, t)
        except CostError as e:
            row.estimate_errors[t] = str(e)
            continue
        row.estimate_ms[t] = table.total.expected_latency_s * 1e3  # the latency itself for a graph without exits
        row.estimate_mj[t] = table.total.expected_energy_j * 1e3
        by_bound: dict[str, float] = {}
        for r in table.rows:
            by_bound[r.bound] = by_bound.get(r.bound, 0.0) + r.latency_s
        row.estimate_bound[t] = max(by_bound, key=by_bound.__getitem__) if by_bound else "-"


def new_row(model: str, cfg: Config) -> Row:
    """An empty row for `cfg` on `model`."""
    fused = cfg.fuse and cfg.runner is Runner.NUMBA or FUSE_IN_PIPELINE.search(cfg.pipeline) is not None
    return Row(model, cfg.name, cfg.backend, cfg.pipeline, fused)
