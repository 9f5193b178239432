"""Run one model through a list of configurations: our backends in this process, peers each in a child process."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import runtime
from ..backends import reference
from ..ir import Graph, to_onnx
from ..passes import PassContext, run_pipeline
from .configs import BASELINE, Config, Runner
from .measure import Row, compare, fill_estimates, new_row, peak_run_bytes, stored_bytes, time_runs
from .models.registry import ExitSetup
from .peer_process import time_graph_in_subprocess, time_onnx_in_subprocess

PEER_MODELS: dict[str, Callable[[bytes], bytes]] = {}
"""ONNX Runtime model variants by `Config.peer_variant`, from our exported fp32 ONNX model (filled below)."""


def _ort_fp32(fp32: bytes) -> bytes:
    return fp32


def _ort_int8_dynamic(fp32: bytes) -> bytes:
    from .quantized_models import ort_int8_model

    return ort_int8_model(fp32)


PEER_MODELS.update({"fp32": _ort_fp32, "int8-dynamic": _ort_int8_dynamic})


@dataclass
class ModelRun:
    """Everything measured on one model: its rows and, per configuration, the graph that ran (for the plots)."""

    model: str
    rows: list[Row]
    fp32_graph: Graph
    graphs: dict[str, Graph] = field(default_factory=dict)
    exits: ExitSetup | None = None
    reference_metric: float | None = None
    """The model's metric on the reference backend, fp32 (computed for the early-exit rows' bound)."""


@dataclass(frozen=True)
class Settings:
    """How to measure: timed runs, warm-up, threads, cost-model targets, int8 kernel path, pass target."""

    repeats: int = 7
    warmup: int = 2
    threads: int = 1
    targets: tuple[str, ...] = ()
    int8_path: str | None = None
    pass_target: str | None = None  # the target hardware-aware passes (prune{pattern=auto}) ask


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:400]


def compiled_graph(graph: Graph, cfg: Config, pass_target: str | None = None, exits: ExitSetup | None = None) -> Graph:
    """The graph `cfg` runs: the model's `early-exit` pass when the configuration has exits (fitted on the model's
    calibration feeds), its pipeline, then the Numba backend's `fuse` when the configuration fuses."""
    if cfg.exits:
        if exits is None:
            raise ValueError(f"configuration {cfg.name!r} needs a model with early exits")
        graph = run_pipeline(graph, exits.pipeline, ctx=PassContext(calibration=list(exits.calibration)))
    g = run_pipeline(graph, cfg.pipeline, target=pass_target) if cfg.pipeline else graph
    return run_pipeline(g, "fuse") if cfg.runner is Runner.NUMBA and cfg.fuse else g


def _ours(row: Row, graph: Graph, cfg: Config, inputs: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray],
          s: Settings, exits: ExitSetup | None = None) -> tuple[Graph, Any | None]:
    """Compile and check `cfg`; fills the row's static columns. Returns the graph and the executable (None if wrong)."""
    t0 = time.perf_counter()
    g = compiled_graph(graph, cfg, s.pass_target, exits)
    options = {"int8_path": s.int8_path} if cfg.runner is Runner.NUMBA and s.int8_path else {}
    exe = runtime.compile(g, backend=cfg.backend, fuse=False, **options)
    row.compile_ms = (time.perf_counter() - t0) * 1e3
    stats = getattr(exe, "stats", {})
    if "jit_seconds" in stats:
        row.jit_ms = stats["jit_seconds"] * 1e3
        row.int8_path = stats.get("int8_path")
        row.kernels = dict(stats.get("kernels_by_layer", {}))
    row.model_bytes = stored_bytes(g)
    got = exe.run(dict(inputs))
    if cfg.runner is not Runner.REFERENCE:
        same = compare(got, reference.run(g, dict(inputs)))
        if same.max_rel_err > cfg.backend_rel_err:
            row.error = (f"{cfg.backend} differs from the reference backend on the same graph: max relative error "
                         f"{same.max_rel_err:.3g} > {cfg.backend_rel_err:g}")
            return g, None
    q = compare(got, want)
    row.cosine, row.max_rel_err, row.max_abs_err = q.cosine, q.max_rel_err, q.max_abs_err
    bad = q.violation(cfg)
    if bad:
        row.error = bad
        return g, None
    arena = int(stats.get("arena_bytes", 0))
    row.peak_memory_bytes = arena + peak_run_bytes(lambda: exe.run(dict(inputs)))
    return g, exe


def _peer(row: Row, graph: Graph, cfg: Config, inputs: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray],
          s: Settings) -> None:
    """Time `cfg`'s peer in its own process and check its outputs; fills the row."""
    if cfg.runner is Runner.TORCH:
        timing = time_graph_in_subprocess(graph, inputs, repeats=s.repeats, warmup=s.warmup, threads=s.threads,
                                          keep_outputs=True)
    else:
        model = PEER_MODELS[cfg.peer_variant](to_onnx(graph).SerializeToString())
        row.model_bytes = len(model)
        timing = time_onnx_in_subprocess(model, inputs, repeats=s.repeats, warmup=s.warmup, threads=s.threads,
                                         keep_outputs=True)
    row.compile_ms = timing.session_s * 1e3
    q = compare(timing.outputs, want)
    row.cosine, row.max_rel_err, row.max_abs_err = q.cosine, q.max_rel_err, q.max_abs_err
    row.error = q.violation(cfg)
    if row.error is None:
        row.median_ms, row.spread_ms, row.repeats = timing.median_s * 1e3, timing.spread_s * 1e3, s.repeats
        row.peak_memory_bytes = timing.peak_rss_bytes


def run_model(name: str, graph: Graph, inputs: Mapping[str, np.ndarray], configs: list[Config], s: Settings,
              quality: Callable[[Callable[..., Any]], float] | None = None, metric: str = "",
              progress: Callable[[str], None] | None = None, exits: ExitSetup | None = None) -> ModelRun:
    """Measure every configuration on one model; a configuration that fails is a row with its error.

    `quality` (the zoo model's own metric, given a run function) is computed for each configuration
    that passes its bound. Early-exit configurations run only when the model has `exits`, and need `quality`.
    """
    # the golden outputs come from the reference Executable, as the reference row's do: numpy's BLAS rounds
    # differently with one and with two threads on some CPUs (OpenBLAS on AMD Zen), and that Executable holds
    # small graphs at one thread
    golden = runtime.compile(graph, backend="reference")
    want = golden.run(dict(inputs))
    out = ModelRun(name, [], graph, exits=exits)
    if exits is not None and quality is not None and any(c.exits for c in configs):
        out.reference_metric = float(quality(golden.run))
    for cfg in configs:
        if cfg.exits and out.reference_metric is None:
            if progress:  # no row: the model has no exits (or no metric to bound them by)
                progress(f"{name}: {cfg.name} (no exits)")
            continue
        row = new_row(name, cfg)
        out.rows.append(row)
        try:
            _measure(out, row, cfg, inputs, want, s, quality, metric)
        except Exception as e:  # one configuration's failure is its row's error, never the end of the run
            row.error = _first_line(e)
            row.median_ms = row.spread_ms = None
        if progress:
            progress(f"{name}: {cfg.name}")
    _relate(out.rows)
    return out


def _measure(out: ModelRun, row: Row, cfg: Config, inputs: Mapping[str, np.ndarray],
             want: Mapping[str, np.ndarray], s: Settings, quality: Callable[[Callable[..., Any]], float] | None,
             metric: str) -> None:
    """Fill `row` for `cfg`: checks first, then timing, the model's metric and the estimates."""
    if cfg.is_peer:
        _peer(row, out.fp32_graph, cfg, inputs, want, s)
        return
    g, exe = _ours(row, out.fp32_graph, cfg, inputs, want, s, out.exits)
    out.graphs[cfg.name] = g
    fill_estimates(row, g, list(s.targets))
    if exe is None:
        return
    if cfg.exits and quality is not None and out.exits is not None and out.reference_metric is not None:
        row.metric, row.metric_value = metric, float(quality(exe.run))
        drop = out.reference_metric - row.metric_value
        if drop > out.exits.max_metric_drop:
            row.error = (f"{metric} {row.metric_value:.4f} is {drop:.4f} below reference fp32's "
                         f"{out.reference_metric:.4f}, more than the bound {out.exits.max_metric_drop:g}")
            return
    feeds = dict(inputs)
    row.median_ms, row.spread_ms = time_runs(lambda: exe.run(feeds), s.repeats, s.warmup)
    row.repeats = s.repeats
    if quality is not None and not cfg.exits:
        row.metric, row.metric_value = metric, float(quality(exe.run))


def _relate(rows: list[Row]) -> None:
    """Speed-ups against the baseline row, measured and predicted on cpu-host."""
    base = next((r for r in rows if r.config == BASELINE), None)
    for r in rows:
        if base is not None and base.median_ms and r.median_ms:
            r.speedup = base.median_ms / r.median_ms
        if base is not None and "cpu-host" in base.estimate_ms and "cpu-host" in r.estimate_ms:
            r.predicted_speedup = base.estimate_ms["cpu-host"] / r.estimate_ms["cpu-host"]
