"""The Numba backend on early-exit graphs: each segment compiled on its own, later ones per bucket of rows.

Segment 0 runs on the whole batch. After exit k the fired rows are dropped from every batch-carrying value
still needed (numpy fancy indexing) and segment k + 1 runs on the rows left, padded up to a bucket: the next
power of two, at most B. Each (segment, bucket) is lowered and planned once, lazily on first use, and cached,
with an arena of its own (per thread, as every NumbaExecutable). The compacted rows occupy the first r rows of
the bucket's input; the padding rows repeat the first of them and their results are dropped (every node run
on part of the batch keeps rows apart: `ir/exit_rows.py`). See docs/early-exit.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..backends.reference.early_exit import assemble, keep_rows
from ..ir.exit_plan import ExitPlan, Segment, plan_exits, plan_segments, segment_graph
from ..ir.exits import has_exits
from ..ir.graph import Graph
from ..ir.interpreter import check_inputs
from .executable import Executable, NodeProfile, Profile
from .exit_stats import ExitCounters
from .numba_exec import NumbaExecutable


def bucket_rows(rows: int, batch: int) -> int:
    """Rows a later segment is compiled for when `rows` of `batch` are left: the next power of two, at most B."""
    return min(batch, 1 << max(rows - 1, 0).bit_length())


def pad_rows(a: np.ndarray, rows: int, bucket: int, m: int) -> np.ndarray:
    """`a` (rows * m leading entries) extended to bucket * m by repeating its first row's entries."""
    if rows == bucket:
        return a
    out = np.empty((bucket * m,) + a.shape[1:], a.dtype)
    out[: rows * m] = a
    out[rows * m:] = np.tile(a[:m], (bucket - rows,) + (1,) * (a.ndim - 1))
    return out


class SegmentPrograms:
    """One segment's executables, one per bucket of rows, compiled on first use and cached."""

    def __init__(self, plan: ExitPlan, seg: Segment, options: dict[str, Any]) -> None:
        self.plan = plan
        self.seg = seg
        self.options = options
        self.by_rows: dict[int, NumbaExecutable] = {}
        self.compile_seconds: dict[int, float] = {}
        self._lock = threading.Lock()

    def get(self, rows: int) -> NumbaExecutable:
        """The executable for `rows` batch rows (compiled now if it is the first run with that many)."""
        exe = self.by_rows.get(rows)
        if exe is None:
            with self._lock:
                exe = self.by_rows.get(rows)
                if exe is None:
                    t0 = time.perf_counter()
                    exe = NumbaExecutable(segment_graph(self.plan, self.seg, rows), **self.options)
                    self.compile_seconds[rows] = time.perf_counter() - t0
                    self.by_rows[rows] = exe
        return exe


class NumbaExitExecutable(Executable):
    """An early-exit graph on the Numba backend: rows stop at their exit, later segments run on the rest."""

    def __init__(self, graph: Graph, **options: Any) -> None:
        t0 = time.perf_counter()
        self.plan = plan_exits(graph)
        self.segments = [SegmentPrograms(self.plan, s, options) for s in plan_segments(self.plan)]
        for programs in self.segments:  # the path where no row leaves early is compiled up front
            programs.get(self.plan.batch)
        super().__init__(graph, "numba", time.perf_counter() - t0)
        self._counters = ExitCounters(self.stats, len(self.plan.exits))
        self.stats["segments"] = [len(s.nodes) for s in plan_segments(self.plan)]

    def buckets(self) -> dict[int, list[int]]:
        """Per segment index, the row counts compiled so far."""
        return {p.seg.index: sorted(p.by_rows) for p in self.segments}

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run once; rows stop at the first exit that fires for them. Safe to call from several threads."""
        out, left, kernels = self._run(inputs)
        self._counters.record(left, kernels)
        return out

    def _run(self, inputs: Mapping[str, Any], timings: list[NodeProfile] | None = None
             ) -> tuple[dict[str, np.ndarray], list[int], int]:
        plan, batch, n = self.plan, self.plan.batch, len(self.plan.exits)
        given = check_inputs(plan.graph, inputs)
        env: dict[int, np.ndarray] = dict(given)
        live = np.arange(batch)
        left = [0] * (n + 1)
        taken_rows: list[tuple[np.ndarray, np.ndarray]] = []
        kernels = 0
        for programs in self.segments:
            seg = programs.seg
            if seg.index == n + 1:  # after exit_select: the whole batch again
                final = env.get(id(plan.select.inputs[0])) if len(live) else None
                out, taken = assemble(plan, final, live, taken_rows)
                env[id(plan.select.outputs[0])], env[id(plan.select.outputs[1])] = out, taken
            elif seg.index > 0 and not len(live):
                continue
            rows = len(live) if 0 < seg.index <= n else batch
            bucket = bucket_rows(rows, batch)
            exe = programs.get(bucket)
            feed = {}
            for v in seg.inputs:
                m = plan.rows.rows.get(id(v))
                feed[v.name] = env[id(v)] if m is None else pad_rows(env[id(v)], rows, bucket, m)
            t0 = time.perf_counter()
            got = exe.run(feed)
            if timings is not None:
                timings.append(NodeProfile(f"segment{seg.index}", "segment", f"rows{bucket}",
                                           time.perf_counter() - t0, 0, f"{rows} rows in a bucket of {bucket}"))
            kernels += exe.stats["kernels"]
            for v in seg.outputs:
                m = plan.rows.rows.get(id(v))
                env[id(v)] = got[v.name] if m is None or rows == bucket else got[v.name][: rows * m]
            if seg.index < n:
                ex = plan.exits[seg.index]
                fire = env[id(ex.outputs[0])]
                taken_rows.append((live[fire], env[id(ex.inputs[0])][fire]))
                left[seg.index] = int(fire.sum())
                if left[seg.index]:
                    keep = ~fire
                    for v in plan.compact_after[seg.index]:
                        env[id(v)] = keep_rows(env[id(v)], keep, plan.rows_of(v))
                    live = live[keep]
        if not any(p.seg.index == n + 1 for p in self.segments):
            final = env.get(id(plan.select.inputs[0])) if len(live) else None
            out, taken = assemble(plan, final, live, taken_rows)
            env[id(plan.select.outputs[0])], env[id(plan.select.outputs[1])] = out, taken
        left[n] = len(live)
        return {v.name: (v.data if v.data is not None else env[id(v)]) for v in plan.graph.outputs}, left, kernels

    def profile(self, inputs: Mapping[str, Any], repeats: int = 5) -> Profile:
        """Time of each segment that ran (one instrumented run) and the median of whole runs."""
        rows: list[NodeProfile] = []
        self._run(inputs, rows)
        return Profile(rows, self.median_seconds(inputs, repeats), repeats)


def numba_backend(graph: Graph, **options: Any) -> Executable:
    """The "numba" backend: a NumbaExitExecutable for a graph with exits, else a NumbaExecutable."""
    return NumbaExitExecutable(graph, **options) if has_exits(graph) else NumbaExecutable(graph, **options)


def _register() -> None:
    from . import register_backend

    register_backend("numba", numba_backend)


_register()
