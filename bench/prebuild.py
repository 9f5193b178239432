"""Compile the Numba configurations' kernels ahead, in worker processes at once, into Numba's disk cache.

Numba compiles one kernel at a time on one core. Before anything is timed, `prebuild` runs every (model,
configuration) pair of the Numba backend through the passes and the backend's compile in `workers` child
processes; the timed loop that follows loads the kernels from the disk cache. The passes and the lowering run
here (lowering compiles nothing) and tell each pair's kernels; pairs that need the same kernels go to the same
worker, so a kernel is compiled once wherever the split allows, and the workers get the graphs after the
passes. Nothing is timed while the workers run.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from .. import runtime
from ..ir import Graph
from .configs import Config, Runner
from .measure import Row
from .models.registry import ExitSetup
from .suite import Settings, compiled_graph

WORKER_FAILED = "compile worker failed"
"""How the error of a job whose worker process died (or never started) begins."""


@dataclass(frozen=True)
class CompileJob:
    """One (model, configuration) pair to compile: the model's graph, inputs and exits travel with it."""

    model: str
    config: Config
    graph: Graph
    inputs: Mapping[str, np.ndarray]
    exits: ExitSetup | None = None


@dataclass(frozen=True)
class JobResult:
    """What compiling one pair cost in its worker, or why it failed (the timed loop then reports the error)."""

    model: str
    config: str
    jit_s: float
    error: str | None = None


@dataclass
class PrebuildReport:
    """The prebuild's wall time and, per (model, configuration), the compile seconds spent in a worker."""

    workers: int
    wall_s: float = 0.0
    jit_s: dict[tuple[str, str], float] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def compiler_s(self) -> float:
        """Compile seconds summed over the workers (more than `wall_s` when they overlapped)."""
        return sum(self.jit_s.values())

    def worker_failures(self) -> list[str]:
        """The errors of jobs whose worker process failed (not those whose passes or kernels failed)."""
        return [e for e in self.errors.values() if e.startswith(WORKER_FAILED)]

    def credit(self, rows: Sequence[Row]) -> None:
        """Add each row's compile seconds in a worker to its `jit_ms` and `compile_ms` (this process only loaded
        those kernels from the disk cache)."""
        for row in rows:
            extra_ms = self.jit_s.get((row.model, row.config), 0.0) * 1e3
            if extra_ms:
                row.jit_ms = (row.jit_ms or 0.0) + extra_ms
                row.compile_ms = (row.compile_ms or 0.0) + extra_ms


def numba_jobs(models: Sequence[tuple[str, Graph, Mapping[str, np.ndarray], ExitSetup | None]],
               configs: Sequence[Config]) -> list[CompileJob]:
    """Every pair of a model and a Numba configuration that the timed loop will compile."""
    return [CompileJob(name, cfg, graph, inputs, exits)
            for name, graph, inputs, exits in models for cfg in configs
            if cfg.runner is Runner.NUMBA and (not cfg.exits or exits is not None)]


@dataclass(frozen=True)
class LoweredJob:
    """A job after its passes, as a worker compiles it: the graph the backend gets and the kernels it lowers to."""

    model: str
    config: str
    graph: Graph
    inputs: Mapping[str, np.ndarray]
    kernels: frozenset[str]


def lower_job(job: CompileJob, s: Settings) -> LoweredJob:
    """Run `job`'s passes and lower its graph (nothing is compiled); raises what they raise."""
    from ..backends.numba import DEFAULT_PARALLEL_THRESHOLD, lower

    g = compiled_graph(job.graph, job.config, s.pass_target, job.exits)
    plan = lower(g, DEFAULT_PARALLEL_THRESHOLD, s.int8_path)
    kernels = frozenset(k for step in plan.steps if not step.is_view for k in step_kernels(step.kernel, step.parts))
    return LoweredJob(job.model, job.config.name, g, job.inputs, kernels)


def step_kernels(step_kernel: str, parts: Sequence[Any] = ()) -> list[str]:
    """The compiled kernels a step runs: its own, and for an image chain each of its steps' serial twin too."""
    if not parts:
        return [compiled_kernel(step_kernel)]
    return [f"{step_kernel.split('(')[0]}{PARALLEL_SUFFIX}",
            *(compiled_kernel(p.kernel.removesuffix(PARALLEL_SUFFIX)) for p in parts)]


PARALLEL_SUFFIX = "[par]"

PARALLEL_COMPILE_WEIGHT = 3
"""A parallel twin's compile cost in serial kernels: Numba builds its serial, gufunc and outer modules, each with
the helpers it calls (docs/numba-backend.md, "Compile time and caching")."""


def compiled_kernel(step_kernel: str) -> str:
    """The compiled kernel behind a step's kernel name: the epilogue is data (`gemm_uk+add+relu[par]` and
    `gemm_uk+add[par]` run one compiled `gemm_uk[par]`)."""
    parallel = step_kernel.endswith(PARALLEL_SUFFIX)
    base = step_kernel.removesuffix(PARALLEL_SUFFIX).split("+")[0]
    return base + (PARALLEL_SUFFIX if parallel else "")


def compile_weight(kernels: set[str] | frozenset[str]) -> int:
    """Estimated compile cost of a set of kernels, in serial kernels."""
    return sum(PARALLEL_COMPILE_WEIGHT if k.endswith(PARALLEL_SUFFIX) else 1 for k in kernels)


SPLIT_RESTARTS = 16
"""Random job orders `split_jobs` starts its local search from (the first is heaviest-first)."""


def split_jobs(kernels: Sequence[frozenset[str]], bins: int, seed: int = 0) -> list[list[int]]:
    """Job indices in at most `bins` groups of least estimated compile time: the heaviest group's cost (of the union
    of its jobs' kernels: a kernel two jobs share compiles once in their group), then the total.

    Each start puts the jobs, in its order, into the group that ends cheapest, then makes single moves and
    pairwise swaps while they lower the cost; the best of `SPLIT_RESTARTS` starts wins (seeded, so repeatable).
    """
    names = sorted(set().union(*kernels)) if kernels else []
    bit = {k: 1 << i for i, k in enumerate(names)}
    parallel = sum(bit[k] for k in names if k.endswith(PARALLEL_SUFFIX))
    masks = [sum(bit[k] for k in ks) for ks in kernels]

    def weight(mask: int) -> int:
        return PARALLEL_COMPILE_WEIGHT * (mask & parallel).bit_count() + (mask & ~parallel).bit_count()

    def cost(assign: list[int]) -> tuple[int, int]:
        unions = [0] * bins
        for i, b in enumerate(assign):
            unions[b] |= masks[i]
        loads = [weight(u) for u in unions]
        return max(loads), sum(loads)

    rng = np.random.default_rng(seed)
    heaviest = sorted(range(len(masks)), key=lambda j: -weight(masks[j]))
    best_assign, best = [0] * len(masks), (1 << 62, 0)
    for start in range(SPLIT_RESTARTS):
        order = heaviest if start == 0 else [int(i) for i in rng.permutation(len(masks))]
        assign, unions = [0] * len(masks), [0] * bins
        for i in order:
            assign[i] = min(range(bins), key=lambda b: (weight(unions[b] | masks[i]), b))
            unions[assign[i]] |= masks[i]
        assign, c = _improve(assign, bins, cost)
        if c < best:
            best_assign, best = assign, c
    return [g for g in ([i for i, b in enumerate(best_assign) if b == g_] for g_ in range(bins)) if g]


def _improve(assign: list[int], bins: int, cost: Callable[[list[int]], tuple[int, int]]) -> tuple[list[int],
                                                                                                  tuple[int, int]]:
    """Single moves and pairwise swaps of jobs between groups while one lowers `cost`."""
    best = cost(assign)
    n = len(assign)
    improved = True
    while improved:
        improved = False
        for i in range(n):
            for other in [*(("move", b) for b in range(bins)), *(("swap", j) for j in range(i + 1, n))]:
                trial = list(assign)
                if other[0] == "move":
                    trial[i] = other[1]
                else:
                    trial[i], trial[other[1]] = assign[other[1]], assign[i]
                c = cost(trial)
                if c < best:
                    assign, best, improved = trial, c, True
    return assign, best


def compile_group(jobs: list[LoweredJob], s: Settings) -> list[JobResult]:
    """In a worker: compile and run each job once, so its kernels land in the disk cache."""
    numba.set_num_threads(min(s.threads, numba.config.NUMBA_NUM_THREADS))  # the plan's twins depend on it
    out = []
    for job in jobs:
        try:
            options = {"int8_path": s.int8_path} if s.int8_path else {}
            exe = runtime.compile(job.graph, backend="numba", fuse=False, **options)
            exe.run(dict(job.inputs))
            out.append(JobResult(job.model, job.config, float(exe.stats.get("jit_seconds", 0.0))))
        except Exception as e:  # reported by the timed loop, which meets it again
            out.append(JobResult(job.model, job.config, 0.0, f"{type(e).__name__}: {e}"[:400]))
    return out


def prebuild(jobs: list[CompileJob], s: Settings, workers: int,
             progress: Callable[[str], None] | None = None) -> PrebuildReport:
    """Compile `jobs` in up to `workers` spawned processes at once; `progress` is told of each job done.

    Nothing is spawned (`workers` 0 in the report) when the jobs fit one group: their kernels are all shared."""
    report = PrebuildReport(workers)
    if workers < 2 or len(jobs) < 2:
        report.workers = 0
        return report
    t0 = time.perf_counter()
    lowered = []
    for job in jobs:
        try:
            lowered.append(lower_job(job, s))
        except Exception as e:  # not shipped: the timed loop meets the same failure and reports it in the row
            report.errors[(job.model, job.config.name)] = f"{type(e).__name__}: {e}"[:400]
            if progress:
                progress(f"{job.model}: {job.config.name} (fails)")
    groups = split_jobs([j.kernels for j in lowered], workers)
    if len(groups) < 2:  # one process's work: the timed loop compiles it as it comes, without a spawn
        report.workers = 0
        return report
    report.workers = len(groups)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited Numba thread pool
    with ProcessPoolExecutor(max_workers=len(groups), mp_context=context) as pool:
        futures = {pool.submit(compile_group, [lowered[i] for i in g], s): g for g in groups}
        for done in as_completed(futures):
            try:
                results = done.result()
            except Exception as e:  # a worker that died: the timed loop compiles what it left
                results = [JobResult(lowered[i].model, lowered[i].config, 0.0, f"{WORKER_FAILED}: {e!r}")
                           for i in futures[done]]
            for r in results:
                if r.error:
                    report.errors[(r.model, r.config)] = r.error
                else:
                    report.jit_s[(r.model, r.config)] = r.jit_s
                if progress:
                    progress(f"compiled {r.model}: {r.config}")
    report.wall_s = time.perf_counter() - t0
    return report
