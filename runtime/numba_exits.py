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

from ..ir.exit_plan import ExitPlan, Segment, plan_exits, plan_segments, segment_graph
from ..ir.exits import has_exits
from ..ir.graph import Graph, Value
from ..ir.input_check import check_inputs
from .executable import Executable, Inputs, NodeProfile, Profile
from .exit_stats import ExitCounters
from .numba_exec import NumbaExecutable


def bucket_rows(rows: int, batch: int) -> int:
    """Rows a later segment is compiled for when `rows` of `batch` are left: the next power of two, at most B."""
    return min(batch, 1 << max(rows - 1, 0).bit_length())


class Workspace:
    """One thread's buffers for compacted values (two per value, used in turn) and live row indices."""

    def __init__(self, plan: ExitPlan) -> None:
        self.plan = plan
        self.stage: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.current: dict[int, int] = {}
        self.rows = np.arange(plan.batch)
        self.live = (np.empty(plan.batch, np.int64), np.empty(plan.batch, np.int64))
        self.keep = np.empty(plan.batch, np.bool_)

    def target(self, v: Value, like: np.ndarray) -> np.ndarray:
        """The buffer (B * m leading entries) `v` is compacted into next: not the one it is read from."""
        pair = self.stage.get(id(v))
        if pair is None:
            shape = (self.plan.batch * self.plan.rows_of(v),) + like.shape[1:]
            pair = self.stage[id(v)] = (np.empty(shape, like.dtype), np.empty(shape, like.dtype))
        which = 1 - self.current.get(id(v), 1)
        self.current[id(v)] = which
        return pair[which]

    def is_staged(self, v: Value, a: np.ndarray) -> bool:
        """True when `a` is one of the buffers of `v` (so padding may be written into it)."""
        return any(a is buf for buf in self.stage.get(id(v), ()))


def compact(a: np.ndarray, kept: np.ndarray, rows: int, m: int, out: np.ndarray) -> np.ndarray:
    """Write batch rows `kept` (indices among the first `rows`) of `a` into the front of `out`; returns `out`.

    np.take with mode="clip" writes into `out` directly (with mode="raise", as np.compress uses, numpy buffers
    the whole result first).
    """
    src = a[: rows * m].reshape((rows, m) + a.shape[1:])
    np.take(src, kept, axis=0, out=out[: len(kept) * m].reshape((len(kept), m) + a.shape[1:]), mode="clip")
    return out


def fit_rows(ws: Workspace, v: Value, a: np.ndarray, rows: int, bucket: int, m: int) -> np.ndarray:
    """`a` (its first rows * m entries valid) as bucket * m entries: the padding rows repeat the first row."""
    n = bucket * m
    if a.shape[0] == n:
        return a
    if a.shape[0] < n or not ws.is_staged(v, a):  # a value fed on fewer rows is compacted into a buffer first
        raise RuntimeError(f"early exit: %{v.name} holds {a.shape[0]} entries, not a buffer of B * m rows to fill "
                           f"{bucket} rows in place")
    view = a[:n]
    blocks = view.reshape((bucket, m) + a.shape[1:])
    blocks[rows:] = blocks[0]
    return view


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
                    exe = NumbaExecutable(segment_graph(self.plan, self.seg, rows), outputs_in_arena=True,
                                          **self.options)
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
        self._local = threading.local()
        self.stats["segments"] = [len(s.nodes) for s in plan_segments(self.plan)]

    def compile_buckets(self) -> None:
        """Compile every bucket of every later segment now (else each compiles on the first run that needs it)."""
        sizes = {bucket_rows(r, self.plan.batch) for r in range(1, self.plan.batch + 1)}
        for programs in self.segments:
            if 0 < programs.seg.index <= len(self.plan.exits):
                for rows in sorted(sizes):
                    programs.get(rows)

    def buckets(self) -> dict[int, list[int]]:
        """Per segment index, the row counts compiled so far."""
        return {p.seg.index: sorted(p.by_rows) for p in self.segments}

    def run(self, inputs: Inputs, *, cast: bool = False) -> dict[str, np.ndarray]:
        """Run once; rows stop at the first exit that fires for them. Safe to call from several threads."""
        out, left, kernels = self._run(inputs, cast=cast)
        self._counters.record(left, kernels)
        return out

    def _workspace(self) -> Workspace:
        ws = getattr(self._local, "ws", None)
        if ws is None:
            ws = self._local.ws = Workspace(self.plan)
        return ws

    def _run(self, inputs: Inputs, timings: list[NodeProfile] | None = None, cast: bool = False
             ) -> tuple[dict[str, np.ndarray], list[int], int]:
        plan, batch, n = self.plan, self.plan.batch, len(self.plan.exits)
        ws = self._workspace()
        env: dict[int, np.ndarray] = dict(check_inputs(plan.graph, inputs, cast))
        t = plan.select.outputs[0].type
        out, taken = np.empty(t.shape, t.dtype.np_dtype), np.empty(batch, np.int32)  # the fresh outputs
        env[id(plan.select.outputs[0])], env[id(plan.select.outputs[1])] = out, taken
        live, spare = ws.live
        live[:] = ws.rows
        r, left, kernels = batch, [0] * (n + 1), 0
        for programs in self.segments:
            seg = programs.seg
            if seg.index == n + 1 or (seg.index > 0 and not r):
                break
            rows = r if seg.index > 0 else batch
            bucket = bucket_rows(rows, batch)
            exe = programs.get(bucket)
            feed = {}
            for v in seg.inputs:
                m = plan.rows.rows.get(id(v))
                feed[v.name] = env[id(v)] if m is None else fit_rows(ws, v, env[id(v)], rows, bucket, m)
            t0 = time.perf_counter()
            got = exe.run_views(feed)
            env.update((id(v), got[v.name]) for v in seg.outputs)
            if timings is not None:
                timings.append(NodeProfile(f"segment{seg.index}", "segment", f"rows{bucket}",
                                           time.perf_counter() - t0, 0, f"{rows} rows in a bucket of {bucket}"))
            kernels += exe.stats["kernels"]
            if seg.index == n:
                break
            ex = plan.exits[seg.index]
            fire = env[id(ex.outputs[0])][:r]
            gone = live[:r][fire]
            out[gone], taken[gone] = env[id(ex.inputs[0])][:r][fire], seg.index
            left[seg.index] = len(gone)
            if len(gone):
                kept = np.flatnonzero(np.logical_not(fire, out=ws.keep[:r]))
                for v in plan.compact_after[seg.index]:
                    env[id(v)] = compact(env[id(v)], kept, r, plan.rows_of(v), ws.target(v, env[id(v)]))
                np.take(live, kept, out=spare[: len(kept)], mode="clip")
                live, spare, r = spare, live, r - len(gone)
        if r:
            final = env[id(plan.select.inputs[0])]
            out[live[:r]], taken[live[:r]] = final[:r], n
        left[n] = r
        post = next((p for p in self.segments if p.seg.index == n + 1), None)
        if post is not None:
            got = post.get(batch).run_views({v.name: env[id(v)] for v in post.seg.inputs})
            env.update((id(v), got[v.name]) for v in post.seg.outputs)
            kernels += post.get(batch).stats["kernels"]
        fresh = {id(out), id(taken)}
        results = {v.name: (v.data if v.data is not None else env[id(v)]) for v in plan.graph.outputs}
        return {k: a if id(a) in fresh else np.array(a, copy=True) for k, a in results.items()}, left, kernels

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
