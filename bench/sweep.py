"""`bench sweep`: a grid of models x pipelines x targets (x sparsity levels) as independent trials on Dask.

Each trial compiles one model under one pipeline on the Numba backend of the worker that runs it,
with `target` as the pass target (for hardware-aware passes such as `prune{pattern=auto}`) and the
target the cost model prices it on (cpu-host too, for the predicted speed-up). A pipeline holding
`@sparsity` becomes one trial per `--sparsities` level. The empty pipeline (our fp32, unfused)
runs per model as the baseline of every speed-up. A trial that raises is recorded with its error;
the sweep goes on. Results merge into one JSON (`--json`) and the HTML report (`--html`).

Dask is optional: `pip install 'tensorsmith[sweep]'`. Without `--scheduler` a local cluster of
`--workers` single-threaded worker processes runs the trials.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from .configs import BASELINE, Config, Runner, user_config
from .measure import Row

SPARSITY_PLACEHOLDER = "@sparsity"
"""Written in a pipeline where each `--sparsities` level goes, e.g. prune{pattern=block,sparsity=@sparsity}."""

COST_HOST = "cpu-host"


@dataclass(frozen=True)
class Trial:
    """One point of the grid: a model, a pipeline (empty: the fp32 baseline) and a target."""

    model: str
    pipeline: str
    target: str
    repeats: int = 3
    warmup: int = 1
    threads: int = 1

    @property
    def config(self) -> Config:
        """The configuration the trial measures."""
        if not self.pipeline:
            return Config(BASELINE, Runner.NUMBA, fuse=False, max_rel_err=1e-3)
        return user_config(self.pipeline)


def grid(models: list[str], pipelines: list[str], targets: list[str], sparsities: list[str], repeats: int,
         warmup: int, threads: int) -> list[Trial]:
    """Every trial of the sweep: per model one baseline, then each expanded pipeline on each target."""
    expanded: list[str] = []
    for p in pipelines:
        if SPARSITY_PLACEHOLDER in p:
            if not sparsities:
                raise ValueError(f"pipeline {p!r} holds {SPARSITY_PLACEHOLDER} but --sparsities is empty")
            expanded += [p.replace(SPARSITY_PLACEHOLDER, s) for s in sparsities]
        else:
            expanded.append(p)
    trials = [Trial(m, "", COST_HOST, repeats, warmup, threads) for m in models]
    trials += [Trial(m, p, t, repeats, warmup, threads) for m, p, t in itertools.product(models, expanded, targets)]
    return trials


def run_trial(trial: Trial) -> dict[str, Any]:
    """Measure one trial (in a Dask worker); never raises: an error is recorded in the result."""
    t0 = time.perf_counter()
    try:
        import numba

        from .models import load_model
        from .suite import Settings, run_model

        numba.set_num_threads(min(trial.threads, numba.config.NUMBA_NUM_THREADS))
        model = load_model(trial.model)
        targets = tuple(dict.fromkeys((COST_HOST, trial.target)))
        settings = Settings(trial.repeats, trial.warmup, trial.threads, targets, pass_target=trial.target)
        run = run_model(trial.model, model.graph, model.inputs, [trial.config], settings, model.quality,
                        model.metric_name, exits=model.exits)
        if not run.rows:
            raise ValueError(f"configuration {trial.config.name!r} needs early exits, which model {trial.model!r} "
                             "does not have")
        (row,) = run.rows
        return {"trial": asdict(trial), "row": asdict(row), "error": row.error, "seconds": time.perf_counter() - t0}
    except Exception as e:  # a trial's failure is data, never the end of the sweep
        detail = traceback.format_exception_only(type(e), e)[-1].strip()
        return {"trial": asdict(trial), "row": None, "error": detail, "seconds": time.perf_counter() - t0}


def relate(results: list[dict[str, Any]]) -> list[Row]:
    """The rows of the trials that measured, with speed-ups (measured, and predicted on cpu-host) vs each model's
    baseline trial; a failed trial becomes a row carrying its error."""
    rows = []
    for res in results:
        t = res["trial"]
        if res["row"] is not None:
            row = Row(**res["row"])
        else:
            cfg = Trial(**t).config
            row = Row(t["model"], cfg.name, cfg.backend, cfg.pipeline, False, error=res["error"])
        row.config = f"{row.config} @ {t['target']}" if t["pipeline"] else row.config
        rows.append(row)
    base = {r.model: r for r in rows if r.config == BASELINE and not r.error}
    for r in rows:
        b = base.get(r.model)
        if b is None:
            continue
        r.speedup = b.median_ms / r.median_ms if b.median_ms and r.median_ms else None
        host_b, host_r = b.estimate_ms.get(COST_HOST), r.estimate_ms.get(COST_HOST)
        r.predicted_speedup = host_b / host_r if host_b and host_r else None
    return rows


def run_sweep(trials: list[Trial], scheduler: str | None, workers: int,
              on_done: Any = None) -> list[dict[str, Any]]:
    """Run `trials` on a Dask cluster (the one at `scheduler`, else a local one) and return their results in
    trial order; `on_done(result)` is called as each finishes."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as e:
        raise ImportError("bench sweep needs dask[distributed]: pip install 'tensorsmith[sweep]'") from e
    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                  dashboard_address=None)
    try:
        with Client(scheduler or cluster) as client:
            futures = client.map(run_trial, trials, pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            results: list[dict[str, Any] | None] = [None] * len(trials)
            for fut in as_completed(futures):
                i = index[fut.key]
                if fut.status == "finished":
                    results[i] = fut.result()
                else:  # the worker died or the task could not run: record it, go on
                    exc = fut.exception()
                    results[i] = {"trial": asdict(trials[i]), "row": None, "seconds": 0.0,
                                  "error": f"{type(exc).__name__}: {exc}"}
                if on_done is not None:
                    on_done(results[i])
    finally:
        if cluster is not None:
            cluster.close()
    return [r for r in results if r is not None]


def cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    """`bench sweep`: build the grid from the arguments, run it, print and write the merged results."""
    from .options import DEFAULT_MODELS, progress_bar, split_csv, unknown_targets
    from .report import environment, measured_table, to_json, write_json

    targets = split_csv(args.targets) or [COST_HOST]
    bad = unknown_targets(targets)
    if bad:
        console.print(f"[red]{escape(bad)}[/red]")
        return 2
    models = split_csv(args.models or ",".join(DEFAULT_MODELS))
    pipelines = args.pipelines or ["fuse", f"prune{{pattern=block,sparsity={SPARSITY_PLACEHOLDER}}},fuse",
                                   "quantize{scheme=dynamic},fuse"]
    threads = args.threads or 1
    try:
        trials = grid(models, pipelines, targets, split_csv(args.sparsities), args.repeats, args.warmup, threads)
    except ValueError as e:
        console.print(f"[red]{escape(str(e))}[/red]")
        return 2
    t0 = time.perf_counter()
    with progress_bar(console, len(trials)) as advance:
        results = run_sweep(trials, args.scheduler, args.workers,
                            on_done=lambda r: advance(f"{r['trial']['model']}: {r['trial']['pipeline'] or 'fp32'}"))
    rows = relate(results)
    wall = time.perf_counter() - t0
    console.print(measured_table(rows, f"tensorsmith sweep: {len(trials)} trials on "
                                       f"{args.scheduler or f'a local cluster of {args.workers} workers'}, "
                                       f"{wall:.1f} s"))
    failed = [f"{r.model} / {r.config}: {r.error}" for r in rows if r.error]
    for line in failed:
        console.print(f"[red]failed: {escape(line)}[/red]")
    settings = {"models": models, "pipelines": pipelines, "targets": targets, "sparsities": split_csv(args.sparsities),
                "repeats": args.repeats, "warmup": args.warmup, "threads": threads, "workers": args.workers,
                "scheduler": args.scheduler, "wall_s": wall}
    env = environment(threads, rows)
    if args.json_path:
        write_json(to_json(rows, env, settings, {"trials": results}), args.json_path)
        console.print(f"json: {args.json_path}")
    if args.html_path or args.plot_dir:
        _figures_and_page(rows, targets, failed, env, args, console)
    return 0


def _figures_and_page(rows: list[Row], targets: list[str], failed: list[str], env: dict[str, Any],
                      args: argparse.Namespace, console: Console) -> None:
    """Latency bars and speed-up vs quality into --plot (or a temporary folder), then the page to --html."""
    from .artifacts import html_tables
    from .html_report import write_html
    from .plots import latency_bars, speedup_vs_quality

    with tempfile.TemporaryDirectory(prefix="tensorsmith-sweep-") as tmp:
        folder = Path(args.plot_dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            images = [latency_bars(rows, folder / "latency.png"),
                      speedup_vs_quality(rows, folder / "speedup-vs-quality.png")]
        except ImportError as e:
            console.print(f"[yellow]no figures: {e}[/yellow]")
            images = []
        if args.html_path:
            write_html(args.html_path, "tensorsmith sweep", html_tables(rows, targets), images,
                       [f"failed: {f}" for f in failed], env)
            console.print(f"report: {args.html_path}")
