"""The Numba backend as an Executable: lower once, plan the arena once, then run kernel steps."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from numba.core.dispatcher import Dispatcher

from ..backends.arena import ALIGNMENT, ArenaPlan, Buffer, plan_arena
from ..backends.numba import DEFAULT_PARALLEL_THRESHOLD, Lit, Plan, Step, lower
from ..backends.numba.blas import single_threaded_blas
from ..backends.numba.cpu_features import unavailable_int8_paths
from ..backends.numba.jit import cache_stats, num_threads, read_only
from ..backends.numba.threads import pool_thread_ids, start_pool
from ..ir.graph import Graph
from ..ir.input_check import check_inputs, input_specs, matched_inputs
from ..ir.interpreter import ExecutionError
from .cpu_load import free_cpus, register_pool_threads
from .executable import Executable, Inputs, NodeProfile, Profile

CALL, CALL_DYN, VIEW = 0, 1, 2


def lifetimes(plan: Plan) -> list[Buffer]:
    """Arena buffers of a plan: each intermediate from the first to the last step touching it or a view of it.

    A buffer that a graph output views stays alive past the last step (the output is copied out).
    """
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, step in enumerate(plan.steps):
        for s in step.slots + list(step.writes):
            r = plan.root(s)
            if plan.slots[r].kind == "buffer":
                first.setdefault(r, i)
                last[r] = i
    for _, slot in plan.outputs:  # graph outputs that view a buffer are copied out after the last step
        r = plan.root(slot)
        if r in first:
            last[r] = len(plan.steps)
    return [Buffer(r, plan.slots[r].nbytes, first[r], last[r]) for r in first]


def compiled_entry(fn: Any, args: Sequence[Any]) -> Any:
    """For a Numba dispatcher called with these fixed arguments, its machine-code entry point for their types.

    A bound step always passes the same arrays, so the dispatcher's per-call type resolution (about 0.1 us per
    argument) can be done once here; the entry point still unboxes each argument. Other callables unchanged.
    """
    if not isinstance(fn, Dispatcher):
        return fn
    return fn.compile(tuple(fn.typeof_pyval(a) for a in args))


@dataclass
class Binding:
    """One arena and the kernel calls bound to its buffers (one per thread that runs the executable)."""

    memory: np.ndarray
    template: list[Any]
    program: list[Any]
    steps: list[Step]


class NumbaExecutable(Executable):
    """A graph compiled to Numba kernels over a preallocated arena."""

    def __init__(self, graph: Graph, parallel_threshold: int = DEFAULT_PARALLEL_THRESHOLD,
                 warmup: bool = True, int8_path: str | None = None, outputs_in_arena: bool = False,
                 blocked_layout: bool = True, image_chains: bool = True) -> None:
        t0 = time.perf_counter()
        layer = start_pool()
        self.plan = lower(graph, parallel_threshold, int8_path, outputs_in_arena, blocked_layout, image_chains)
        t1 = time.perf_counter()
        buffers = lifetimes(self.plan)
        self.arena: ArenaPlan = plan_arena(buffers)
        self._inputs = [(name, slot) for name, slot in self.plan.inputs]
        self._allocs = [(s.index, s.shape, s.dtype) for s in self.plan.slots if s.kind == "output"]
        self._output_slots = [slot for _, slot in self.plan.outputs]
        self._input_specs = input_specs(graph)
        self._result_specs = self._results_plan()
        # scipy's BLAS is held at one thread while kernels may spread BLAS calls over Numba's threads: never for a
        # plan lowered with one thread (serial twins only), where the hold would cost ~10 us per run
        self._uses_blas = num_threads() > 1 and any(s.blas for s in self.plan.steps)
        self._parallel = any(s.kernel.endswith("[par]") for s in self.plan.steps)
        self._straight = not self._uses_blas and not self._parallel
        """Serial kernels without BLAS calls: a run enters no context (thread count, BLAS hold)."""
        if self._parallel:  # the free-CPU probe must know this pool's workers from other threads
            register_pool_threads(pool_thread_ids())
        self._owner = threading.get_ident()
        t2 = time.perf_counter()
        before = cache_stats(self.plan.twins)
        self._main = self._bind()  # compiles (or loads) the kernels of steps whose arguments are all fixed
        self._local = threading.local()
        super().__init__(graph, "numba", 0.0)
        if warmup:
            self.run({v.name: np.zeros(v.type.shape, v.type.dtype.np_dtype) for v in graph.inputs})
        t3 = time.perf_counter()
        after = cache_stats(self.plan.twins)
        self.compile_seconds = t3 - t0
        kernels = [s for s in self.plan.steps if not s.is_view]
        self.stats = {
            "arena_bytes": self.arena.size,
            "naive_bytes": self.arena.naive,
            "peak_live_bytes": self.arena.peak_live,
            "arena_strategy": self.arena.strategy,
            "buffers": len(buffers),
            "kernels": len(kernels),
            "views": len(self.plan.steps) - len(kernels),
            "fused": [list(g) for g in self.plan.fused],
            "image_chains": [[p.name for p in s.parts] for s in kernels if s.parts],
            "parallel_kernels": sum(1 for s in kernels if s.kernel.endswith("[par]")),
            "threads": num_threads(),
            "threading_layer": layer,
            "int8_path": self.plan.int8_path,
            "int8_paths_unavailable": unavailable_int8_paths() if self.plan.int8_path else {},
            "lower_seconds": t1 - t0,
            "plan_seconds": t2 - t1,
            "jit_seconds": t3 - t2,
            "cache_hits": after[0] - before[0],
            "cache_misses": after[1] - before[1],
            "kernels_by_layer": dict(self.plan.layer_kernels),
        }

    def _results_plan(self) -> tuple[tuple[str, int, bool], ...]:
        """(name, slot, fresh) per graph output: fresh when the run's own output array can be handed out (an
        output slot, first named), else the value is copied out of the arena or out of an output given already."""
        given: set[int] = set()
        specs = []
        for name, slot in self.plan.outputs:
            specs.append((name, slot, self.plan.slots[slot].kind == "output" and slot not in given))
            given.add(slot)
        return tuple(specs)

    # ---- binding -------------------------------------------------------------------------
    @property
    def _memory(self) -> np.ndarray:
        """The arena of the thread that compiled the executable."""
        return self._main.memory

    def _binding(self) -> Binding:
        """This thread's arena and program: runs from several threads at once never share buffers."""
        if threading.get_ident() == self._owner:
            return self._main
        bound = getattr(self._local, "binding", None)
        if bound is None:
            bound = self._local.binding = self._bind()
        return bound

    def _bind(self) -> Binding:
        plan = self.plan
        memory = np.empty(self.arena.size + ALIGNMENT, np.uint8)
        base = (-memory.ctypes.data) % ALIGNMENT
        arrays: list[Any] = [None] * len(plan.slots)
        static = [False] * len(plan.slots)
        for s in plan.slots:
            if s.kind == "const":
                arrays[s.index], static[s.index] = s.array, True
            elif s.kind == "buffer":
                off = base + self.arena.offsets[s.index]
                mem = memory[off:off + s.nbytes]
                arrays[s.index] = mem.view(s.dtype).reshape(s.shape) if s.nbytes else np.empty(s.shape, s.dtype)
                static[s.index] = True
            elif s.kind == "view" and static[s.base]:  # type: ignore[index]
                arrays[s.index], static[s.index] = s.view(arrays[s.base]), True  # type: ignore[index,misc]
        program: list[tuple[Any, ...]] = []
        steps: list[Step] = []
        readable: dict[int, np.ndarray] = {}

        def value(a: Any, writes: bool) -> Any:
            """A literal's value, or the array of a slot bound now: read-only unless the step writes it."""
            if isinstance(a, Lit):
                return a.value
            if not static[a]:
                return None  # bound on each run
            if writes:
                return arrays[a]
            if a not in readable:
                readable[a] = read_only(arrays[a])
            return readable[a]

        for step in plan.steps:
            if step.is_view:
                out = step.writes[0]
                if not static[out]:
                    program.append((VIEW, step.fn, step.args[0], out))
                    steps.append(step)
                continue
            steps.append(step)
            writes = step.written_args(plan.root)
            vals = [value(a, w) for a, w in zip(step.args, writes)]
            dyn = [(i, a, not writes[i]) for i, a in enumerate(step.args) if isinstance(a, int) and not static[a]]
            if dyn:
                program.append([CALL_DYN, step.fn, vals, dyn, False])  # entry point resolved on its first call
            else:
                program.append((CALL, functools.partial(compiled_entry(step.fn, vals), *vals)))
        return Binding(memory, arrays, program, steps)

    # ---- running -------------------------------------------------------------------------
    def _env(self, inputs: Inputs, bound: Binding, cast: bool = False) -> list[Any]:
        env = list(bound.template)
        arrays = matched_inputs(self._input_specs, inputs)
        if arrays is None:  # C-contiguous arrays of the declared dtypes and shapes, or a clear error
            checked = check_inputs(self.graph, inputs, cast)
            arrays = [checked[id(v)] for v in self.graph.inputs]
        for a, (_, slot) in zip(arrays, self._inputs):
            env[slot] = read_only(a)
        for slot, shape, dt in self._allocs:
            env[slot] = np.empty(shape, dt)
        return env

    def _results(self, env: list[Any]) -> dict[str, np.ndarray]:
        return {name: env[slot] if fresh else np.array(env[slot], copy=True)
                for name, slot, fresh in self._result_specs}

    def _execute(self, env: list[Any], bound: Binding, timings: list[float] | None = None) -> None:
        if timings is not None:
            self._execute_timed(env, bound, timings)
            return
        entry: tuple[Any, ...] = ()
        try:
            for entry in bound.program:
                kind = entry[0]
                if kind == CALL:
                    entry[1]()
                elif kind == CALL_DYN:
                    vals = list(entry[2])
                    for pos, slot, only_read in entry[3]:
                        vals[pos] = read_only(env[slot]) if only_read else env[slot]
                    if not entry[4]:  # inputs are checked to their declared dtype, shape and C order, outputs
                        entry[1], entry[4] = compiled_entry(entry[1], vals), True  # fresh: the types stay fixed
                    entry[1](*vals)
                else:
                    env[entry[3]] = entry[1](env[entry[2]])
        except IndexError:
            raise
        except Exception as e:  # noqa: BLE001 - re-raised naming the step
            step = bound.steps[next(i for i, done in enumerate(bound.program) if done is entry)]
            raise ExecutionError(f"numba backend: step {step.name} ({step.op}, kernel {step.kernel}) failed: "
                                 f"{type(e).__name__}: {e}") from e

    def _execute_timed(self, env: list[Any], bound: Binding, timings: list[float]) -> None:
        """`_execute`, adding each step's seconds to timings[step]."""
        for i, entry in enumerate(bound.program):
            t0 = time.perf_counter()
            self._execute(env, Binding(bound.memory, bound.template, [entry], [bound.steps[i]]))
            timings[i] += time.perf_counter() - t0

    def run(self, inputs: Inputs, *, cast: bool = False) -> dict[str, np.ndarray]:
        """Run once (inputs checked as `Executable.run` says); outputs are fresh arrays (never views into the
        arena). Safe to call from several threads:
        each thread runs in an arena of its own (made on its first run).

        Parallel kernels use at most as many threads as CPUs no other task wants (`cpu_load.free_cpus`):
        with one free CPU they run on the calling thread and wake no worker."""
        return self._results(self._run_env(inputs, cast))

    def _run_env(self, inputs: Inputs, cast: bool = False) -> list[Any]:
        """Run once in this thread's arena; returns the slot arrays."""
        bound = self._binding()
        env = self._env(inputs, bound, cast)
        self._execute_sized(env, bound)
        return env

    def run_checked(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run once on inputs already checked: one C-contiguous array of the declared dtype and shape per graph
        input, in the graph's input order (not verified here). Returns the outputs in `plan.outputs` order as
        views into this thread's arena, valid until its next run: the lean call of a runtime feeding its own
        arrays (the early-exit segments)."""
        bound = self._binding()
        env = list(bound.template)
        for (_, slot), a in zip(self._inputs, arrays):
            env[slot] = read_only(a)
        for slot, shape, dt in self._allocs:
            env[slot] = np.empty(shape, dt)
        self._execute_sized(env, bound)
        return [env[slot] for slot in self._output_slots]

    def _execute_sized(self, env: list[Any], bound: Binding) -> None:
        """`_execute` with the thread count cut to the free CPUs and scipy's BLAS held, where either applies
        (a plan of serial kernels without BLAS calls runs straight: no context to enter on the hot path)."""
        if self._straight:
            self._execute(env, bound)
            return
        if self._uses_blas:
            with self._sized_pool(), single_threaded_blas():
                self._execute(env, bound)
            return
        # parallel kernels, no BLAS: `_sized_pool` spelled out (its generator costs about 2 us of a 30 us model)
        limit = num_threads()
        threads = min(limit, free_cpus()) if limit > 1 else 1
        if threads >= limit:
            self._execute(env, bound)
            return
        numba.set_num_threads(threads)
        try:
            self._execute(env, bound)
        finally:
            numba.set_num_threads(limit)

    @contextlib.contextmanager
    def _sized_pool(self) -> Iterator[None]:
        """Numba's thread count for this thread (thread-local) cut to the free CPUs while the body runs."""
        limit = num_threads() if self._parallel else 1
        threads = min(limit, free_cpus())
        if threads >= limit:
            yield
            return
        numba.set_num_threads(threads)
        try:
            yield
        finally:
            numba.set_num_threads(limit)

    def profile(self, inputs: Inputs, repeats: int = 5) -> Profile:
        """Median time of each kernel step (fused nodes appear as one entry) and of the whole run."""
        bound = self._binding()
        steps = bound.steps
        runs = []
        for _ in range(max(repeats, 1)):
            timings = [0.0] * len(bound.program)
            env = self._env(inputs, bound)
            with self._sized_pool(), single_threaded_blas():
                self._execute(env, bound, timings)
            runs.append(timings)
        med = np.median(np.array(runs), axis=0)
        rows = [NodeProfile(s.name, s.op, s.kernel, float(t), s.nbytes, s.note) for s, t in zip(steps, med)]
        return Profile(rows, self.median_seconds(inputs, repeats), repeats)
