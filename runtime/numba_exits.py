"""The Numba backend on early-exit graphs: each segment compiled on its own, later ones per bucket of rows.

Segment 0 runs on the whole batch. After exit k the fired rows are dropped from every batch-carrying value
still needed (numpy fancy indexing) and segment k + 1 runs on the rows left, padded up to a bucket: the next
power of two, at most B. Each (segment, bucket) is lowered and planned once, lazily on first use, and cached,
with an arena of its own (per thread, as every NumbaExecutable). The compacted rows occupy the first r rows of
the bucket's input; the padding rows repeat the first of them and their results are dropped (every node run
on part of the batch keeps rows apart: `ir/exit_rows.py`). While every row is still in, nothing is copied: when no
row fires at an exit the next segment reads the previous one's arena outputs in place on the whole batch, and when
every row fires the run stops there. The per-segment feeds are precomputed (`Program`), and segments are called
through `NumbaExecutable.run_checked`, which skips the input checks. What follows exit_select runs inside the
segments on each head where that is exact (`ir/exit_sink.py`). See docs/early-exit.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir.exit_plan import ExitPlan, Segment, plan_exits, plan_segments, segment_graph
from ..ir.exit_sink import sink_post
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


@dataclass(frozen=True)
class Program:
    """One segment compiled for one bucket of rows, with its inputs and outputs as positions in a run's values."""

    exe: NumbaExecutable
    feed: list[tuple[int, int | None, Value]]
    """Per input of the executable, in its order: position in the run's values, m (None: not batch-carrying)."""
    outputs: list[int]
    """Per output of the executable, in its order: position in the run's values."""
    kernels: int


class SegmentPrograms:
    """One segment's executables, one per bucket of rows, compiled on first use and cached."""

    def __init__(self, plan: ExitPlan, seg: Segment, options: dict[str, Any], positions: dict[str, int],
                 on_compile: Callable[[], None] | None = None, ms: dict[int, int] | None = None) -> None:
        self.plan = plan
        self.ms = ms
        self.on_compile = on_compile
        self.seg = seg
        self.options = options
        self.positions = positions
        self.by_rows: dict[int, NumbaExecutable] = {}
        self.programs: dict[int, Program] = {}
        self.compile_seconds: dict[int, float] = {}
        self._values = {v.name: v for v in seg.inputs}
        self._lock = threading.Lock()

    def get(self, rows: int) -> NumbaExecutable:
        """The executable for `rows` batch rows (compiled now if it is the first run with that many)."""
        return self.program(rows).exe

    def program(self, rows: int) -> Program:
        """The Program for `rows` batch rows (compiled now if it is the first run with that many)."""
        got = self.programs.get(rows)
        if got is None:
            with self._lock:
                got = self.programs.get(rows)
                if got is None:
                    got = self.programs[rows] = self._compile(rows)
                    if self.on_compile is not None:
                        self.on_compile()
        return got

    def _compile(self, rows: int) -> Program:
        t0 = time.perf_counter()
        exe = NumbaExecutable(segment_graph(self.plan, self.seg, rows, self.ms), outputs_in_arena=True, **self.options)
        self.compile_seconds[rows] = time.perf_counter() - t0
        self.by_rows[rows] = exe
        feed = [(self.positions[v.name], self.plan.rows.rows.get(id(self._values[v.name])), self._values[v.name])
                for v in exe.graph.inputs]
        outs = [self.positions[name] for name, _ in exe.plan.outputs]
        return Program(exe, feed, outs, exe.stats["kernels"])


def value_positions(plan: ExitPlan, segments: list[Segment]) -> dict[str, int]:
    """A position in a run's list of values for every value passed between segments, the runtime and the caller."""
    names: dict[str, int] = {}
    values = [v for s in segments for v in s.inputs + s.outputs] + list(plan.graph.inputs) + list(plan.select.inputs)
    values += list(plan.select.outputs) + [v for v in plan.graph.outputs if v.data is None]
    for v in values:
        names.setdefault(v.name, len(names))
    return names


class NumbaExitExecutable(Executable):
    """An early-exit graph on the Numba backend: rows stop at their exit, later segments run on the rest."""

    def __init__(self, graph: Graph, **options: Any) -> None:
        t0 = time.perf_counter()
        self.plan = plan_exits(graph)
        segments = plan_segments(self.plan)
        sunk = sink_post(self.plan, segments)
        if sunk is not None:  # what follows exit_select runs in every segment on its own head
            segments = sunk.segments
        self._pos = value_positions(self.plan, segments)
        ms = sunk.rows if sunk is not None else None
        self.segments = [SegmentPrograms(self.plan, s, options, self._pos, ms=ms) for s in segments]
        for programs in self.segments:  # the path where no row leaves early is compiled up front
            programs.get(self.plan.batch)
        super().__init__(graph, "numba", time.perf_counter() - t0)
        self._counters = ExitCounters(self.stats, len(self.plan.exits))
        self._local = threading.local()
        self.stats["segments"] = [len(s.nodes) for s in segments]
        for programs in self.segments:  # buckets compiled on later runs add their arenas
            programs.on_compile = self._count_arenas
        self._count_arenas()
        n = len(self.plan.exits)
        pos = self._pos
        self._main = [p for p in self.segments if p.seg.index <= n]
        self._post = next((p for p in self.segments if p.seg.index == n + 1), None)
        heads = [ex.inputs[0] for ex in self.plan.exits] + [self.plan.select.inputs[0]]
        chosen = self.plan.select.outputs[0]
        if sunk is not None:
            heads, chosen = sunk.results, sunk.output
        self._fire_head = [(pos[ex.outputs[0].name], pos[head.name]) for ex, head in zip(self.plan.exits, heads)]
        self._compact = [[(pos[v.name], self.plan.rows_of(v), v) for v in vs] for vs in self.plan.compact_after]
        self._inputs = [(v, pos[v.name]) for v in graph.inputs]
        self._final = pos[heads[-1].name]
        self._select = (pos[chosen.name], pos[self.plan.select.outputs[1].name])
        self._outputs = [(v.name, v.data, pos.get(v.name)) for v in graph.outputs]
        t = chosen.type
        self._out_type = (t.shape, t.dtype.np_dtype)
        self._taken_at = [np.full(self.plan.batch, k, np.int32) for k in range(n + 1)]
        """Per exit (and the end): exit_select's second output when every row leaves there (copied per run)."""

    def _whole(self, head: np.ndarray) -> np.ndarray:
        """exit_select's first output when every row takes `head` (a fresh copy in the output's shape)."""
        out = head.copy()
        return out if out.shape == self._out_type[0] else out.reshape(self._out_type[0])

    def compile_buckets(self) -> None:
        """Compile every bucket of every later segment now (else each compiles on the first run that needs it)."""
        sizes = {bucket_rows(r, self.plan.batch) for r in range(1, self.plan.batch + 1)}
        for programs in self.segments:
            if 0 < programs.seg.index <= len(self.plan.exits):
                for rows in sorted(sizes):
                    programs.get(rows)

    def _count_arenas(self) -> None:
        """stats["arena_bytes"]: the arenas of every (segment, bucket) compiled so far (one thread's: each thread
        that runs the executable has its own)."""
        self.stats["arena_bytes"] = sum(exe.arena.size for p in self.segments for exe in list(p.by_rows.values()))

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
        """One run. While every row is still in (`live` is None) nothing is compacted or padded: the later segments
        run on the whole batch in place; rows are compacted only at an exit where some but not all of them fire.
        The outputs of exit_select are made where the rows' results are known: a copy of the head when every row
        left at one exit, else filled row by row."""
        plan, batch, n = self.plan, self.plan.batch, len(self.plan.exits)
        checked = check_inputs(plan.graph, inputs, cast)
        env: list[Any] = [None] * len(self._pos)
        for v, i in self._inputs:
            env[i] = checked[id(v)]  # C-contiguous, of the declared dtype and shape
        out: np.ndarray | None = None
        taken: np.ndarray | None = None
        ws: Workspace | None = None
        live: np.ndarray | None = None  # original row of each row left; None: every row, in order
        r, left, kernels = batch, [0] * (n + 1), 0
        for programs in self._main:
            k = programs.seg.index
            bucket = batch if live is None else bucket_rows(r, batch)
            prog = programs.program(bucket)
            if live is None:
                args = [env[i] for i, _, _ in prog.feed]
            else:
                args = [env[i] if m is None else fit_rows(ws, v, env[i], r, bucket, m)  # type: ignore[arg-type]
                        for i, m, v in prog.feed]
            t0 = time.perf_counter() if timings is not None else 0.0
            for i, a in zip(prog.outputs, prog.exe.run_checked(args)):
                env[i] = a
            if timings is not None:
                timings.append(NodeProfile(f"segment{k}", "segment", f"rows{bucket}", time.perf_counter() - t0, 0,
                                           f"{r} rows in a bucket of {bucket}"))
            kernels += prog.kernels
            if k == n:
                break
            fire_at, head_at = self._fire_head[k]
            fire = env[fire_at]
            gone_count = (1 if fire[0] else 0) if r == 1 else int(np.count_nonzero(fire[:r]))
            left[k] = gone_count
            if not gone_count:
                continue
            head = env[head_at]
            if gone_count == r and live is None:  # every row left here: the head is the output, nothing runs after
                out, taken = self._whole(head), self._taken_at[k].copy()
                r = 0
                break
            if out is None:
                out, taken = np.empty(*self._out_type), np.empty(batch, np.int32)
            if gone_count == r:
                out[live[:r]], taken[live[:r]] = head[:r], k  # type: ignore[index]
                r = 0
                break
            if ws is None:
                ws = self._workspace()
            if live is None:
                live = ws.live[0]
                live[:] = ws.rows
            fire = fire[:r]
            spare = ws.live[1] if live is ws.live[0] else ws.live[0]
            gone = live[:r][fire]
            out[gone], taken[gone] = head[:r][fire], k  # type: ignore[index]
            kept = np.flatnonzero(np.logical_not(fire, out=ws.keep[:r]))
            for i, m, v in self._compact[k]:
                env[i] = compact(env[i], kept, r, m, ws.target(v, env[i]))
            np.take(live, kept, out=spare[: len(kept)], mode="clip")
            live, r = spare, r - gone_count
        if r:
            final = env[self._final]
            if live is None:
                out, taken = self._whole(final), self._taken_at[n].copy()
            else:
                out[live[:r]], taken[live[:r]] = final[:r], n  # type: ignore[index]
        left[n] = r
        env[self._select[0]], env[self._select[1]] = out, taken
        if self._post is not None:
            prog = self._post.program(batch)
            for i, a in zip(prog.outputs, prog.exe.run_checked([env[i] for i, _, _ in prog.feed])):
                env[i] = a
            kernels += prog.kernels
        results = {}
        for name, data, i in self._outputs:
            a = data if data is not None else env[i]
            results[name] = a if a is out or a is taken else np.array(a, copy=True)
        return results, left, kernels

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
