"""The `bench` command: models through pipelines and backends, side by side."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numba
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .configs import BASELINE, REFERENCE, Config, Runner, select, suite_configs, user_config
from .options import DEFAULT_MODELS, DEFAULT_TARGETS, progress_bar, split_csv, unknown_targets


def _cmd_list(console: Console) -> int:
    from .models import list_models

    t = Table(title="model zoo")
    for col in ("name", "available", "description"):
        t.add_column(col)
    for m in list_models():
        avail = "yes" if m.available else f"no: {m.reason}" if getattr(m, "reason", "") else "no"
        t.add_row(m.name, escape(avail), escape(m.description))
    console.print(t)
    c = Table(title="configurations (rows of each model; --pipelines adds or replaces them)")
    for col in ("configuration", "backend", "pipeline", "backend fuses", "quality floor"):
        c.add_column(col)
    for cfg in suite_configs():
        floor = ("metric drop <= the model's exit bound (models with exits only)" if cfg.exits
                 else f"cosine >= {cfg.min_cosine}" if cfg.min_cosine else f"rel err <= {cfg.max_rel_err:g}")
        fuses = "-" if cfg.runner is not Runner.NUMBA else "yes" if cfg.fuse else "no"
        c.add_row(cfg.name, cfg.backend, escape(cfg.pipeline or "-"), fuses, floor)
    console.print(c)
    return 0


def _cmd_calibrate(args: argparse.Namespace, console: Console) -> int:
    try:
        from .calibrate import calibrate
    except ImportError as e:
        console.print(f"[red]calibration is not available: {e}[/red]")
        return 2
    from .calibrate import CalibrationUnstableError, summary_rows, undo_text

    try:
        result = calibrate(out_path=args.out, force=args.force)
    except CalibrationUnstableError as e:
        console.print(f"[bold red]calibration refused:[/bold red] {escape(str(e))}")
        return 1
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(result, f, indent=2, default=str)
    table = Table(title=f"cpu-host calibration: {escape(result['machine'])}")
    table.add_column("measured")
    table.add_column("value", justify="right")
    for what, value in summary_rows(result):
        table.add_row(escape(what), escape(value))
    console.print(table)
    style = "bold yellow" if result["unstable"] else "green"
    console.print(f"[{style}]{escape(undo_text(result))}[/{style}]")
    return 0


def _cmd_cost(args: argparse.Namespace, console: Console) -> int:
    """`bench cost`: the per-node cost table of each model on each target (no kernel runs)."""
    from ..backends.cost import CostError, estimate
    from ..passes import run_pipeline
    from .models import load_model

    bad = unknown_targets(split_csv(args.targets))
    if bad:
        console.print(f"[red]{escape(bad)}[/red]")
        return 2
    for name in split_csv(args.models or ",".join(DEFAULT_MODELS)):
        try:
            g = load_model(name).graph
        except (KeyError, ValueError, ImportError) as e:
            console.print(f"[red]{escape(name)}: {escape(_message(e))}[/red]")
            return 2
        for pipeline in args.pipelines or [""]:
            try:
                g2 = run_pipeline(g, pipeline, target=args.pass_target) if pipeline else g
            except ValueError as e:
                console.print(f"[red]{escape(name)}: {escape(_message(e))}[/red]")
                return 2
            for tg in split_csv(args.targets):
                try:
                    console.print(estimate(g2, tg).to_rich())
                except CostError as e:
                    console.print(f"[red]{escape(name)} on {escape(tg)}: {escape(str(e))}[/red]")
    return 0


def random_inputs(graph: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for `graph`: standard normal floats, small non-negative integers, random booleans."""
    rng = np.random.default_rng(seed)
    out = {}
    for v in graph.inputs:
        dt = v.type.dtype.np_dtype
        if dt.kind == "f" or v.type.dtype.is_float:
            out[v.name] = rng.standard_normal(v.type.shape).astype(dt)
        elif dt.kind == "b":
            out[v.name] = rng.random(v.type.shape) < 0.5
        else:
            out[v.name] = rng.integers(0, 4, v.type.shape).astype(dt)
    return out


def load_source(source: str) -> tuple[Any, dict[str, np.ndarray]]:
    """The graph and inputs of `source`: a zoo model name (its own inputs), or a .onnx / .ir file (seeded
    random inputs)."""
    from pathlib import Path

    from ..ir import from_onnx, parse
    from .models import load_model

    if source.endswith((".onnx", ".ir")):
        path = Path(source)
        if not path.is_file():
            raise ValueError("no such file")
        graph = from_onnx(path) if source.endswith(".onnx") else parse(path.read_text())
        return graph, random_inputs(graph)
    model = load_model(source)
    return model.graph, dict(model.inputs)


def _cmd_bisect(args: argparse.Namespace, console: Console) -> int:
    """`bench bisect SOURCE --pipelines P --tol T`: the first pass, and node, where outputs leave the tolerance
    (P defaults to the cleanup pipeline)."""
    from ..passes import bisect

    if not args.source:
        console.print("[red]bench bisect needs a zoo model name or a .onnx / .ir file[/red]")
        return 2
    if args.pipelines and len(args.pipelines) != 1:
        console.print("[red]bench bisect takes one pipeline: --pipelines \"PASS,PASS,...\"[/red]")
        return 2
    from ..passes import DEFAULT_CLEANUP

    pipeline = args.pipelines[0] if args.pipelines else DEFAULT_CLEANUP
    try:
        graph, inputs = load_source(args.source)
        result = bisect(graph, pipeline, inputs, args.tol)
    except (KeyError, ValueError, ImportError) as e:
        console.print(f"[red]{escape(args.source)}: {escape(_message(e))}[/red]")
        return 2
    console.print(escape(str(result)), highlight=False)
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `bench`."""
    p = argparse.ArgumentParser(
        prog="bench",
        description="Run models of the zoo under configurations (reference, Numba fp32 unfused and fused, "
                    "block-sparse, int8, int4, stacked; ONNX Runtime fp32 and int8 as peers in their own process); "
                    "print measured latency, speed-up, quality, bytes, memory and compile time, and the cost "
                    "model's estimate per target.",
    )
    p.add_argument("command", nargs="?", default="run", choices=COMMANDS,
                   help="run (default): benchmark models; list: the zoo and configurations; cost: per-node cost "
                        "tables per target; calibrate: measure this CPU; case-study: the BERT optimization case "
                        "study on MiniLM and a BERT-base layer; sweep: models x pipelines x targets on Dask; "
                        "bisect: the first pass (and node) where outputs leave --tol")
    p.add_argument("source", nargs="?", default=None,
                   help="bisect: a zoo model name or a .onnx / .ir file (files get seeded random inputs)")
    p.add_argument("--list", action="store_true", help="same as `bench list`")
    p.add_argument("--models", default=None,
                   help=f"comma-separated zoo names (default: {','.join(DEFAULT_MODELS)})")
    p.add_argument("--pipelines", nargs="+", default=None, metavar="PIPELINE",
                   help="one configuration per pipeline string on the Numba backend (the string says whether to "
                        "fuse), e.g. --pipelines fuse \"prune{sparsity=0.5},quantize,fuse\"; replaces the default "
                        "configurations except the reference fp32 and numba fp32 rows")
    p.add_argument("--backends", default="",
                   help="comma-separated: reference, numba, onnxruntime, torch (default: all available)")
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                   help=f"cost-model targets (default: {','.join(DEFAULT_TARGETS)}; '' for none)")
    p.add_argument("--pass-target", default=None,
                   help="target the pipelines' hardware-aware passes ask (e.g. for prune{pattern=auto})")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median and IQR reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    p.add_argument("--threads", type=int, default=None,
                   help=f"threads for Numba and the peers (default: {numba.config.NUMBA_NUM_THREADS}, all cores)")
    p.add_argument("--int8-path", default=None, help="force the int8 kernel path (default: the host's best)")
    p.add_argument("--compile-workers", type=int, default=usable_cores(),
                   help="processes that compile the Numba rows' kernels at once into the disk cache before "
                        "anything is timed (default: one per core; 1: each row compiles its own as it comes)")
    p.add_argument("--json", dest="json_path", default=None, help="write everything, with the environment, here")
    p.add_argument("--plot", dest="plot_dir", default=None, help="write PNG figures into this folder (matplotlib)")
    p.add_argument("--html", dest="html_path", default=None, help="write one self-contained HTML report here")
    p.add_argument("--out", default=None, help="calibrate: where to write the cpu-host TOML (default: the user "
                                                "config folder, ~/.config/tensorsmith/cpu-host.toml)")
    p.add_argument("--force", action="store_true", help="calibrate: write even when repeated timings disagree "
                                                        "beyond the limit (a busy machine)")
    p.add_argument("--scheduler", default=None, help="sweep: address of a running Dask scheduler (default: a "
                                                      "local cluster)")
    p.add_argument("--workers", type=int, default=2, help="sweep: workers of the local cluster")
    p.add_argument("--sparsities", default="0.5",
                   help="sweep: comma-separated sparsity levels (default 0.5); each makes every pipeline holding "
                        "@sparsity a separate trial")
    p.add_argument("--tol", type=float, default=1e-5,
                   help="bisect: largest allowed |difference| of an output from the original graph's")
    return p


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it, else all)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return max(1, len(affinity(0)) if affinity else os.cpu_count() or 1)


COMMANDS = ("run", "list", "cost", "calibrate", "case-study", "sweep", "bisect")
"""Subcommands of `bench`."""


def chosen_configs(args: argparse.Namespace) -> list[Config]:
    """The configurations `args` ask for: the defaults, or the baselines plus one per `--pipelines` string."""
    configs = suite_configs()
    if args.pipelines:
        configs = [c for c in configs if c.name in (REFERENCE, BASELINE)] + [user_config(p) for p in args.pipelines]
    return select(configs, split_csv(args.backends))


def _check_backends(backends: list[str]) -> str | None:
    """None when every backend is known and installed, else one message saying which is not."""
    from .peers import PEERS, available_peers

    known = [r.value for r in Runner]
    unknown = [b for b in backends if b not in known]
    if unknown:
        return f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(known)}"
    missing = [b for b in backends if b in PEERS and b not in available_peers()]
    how = {"onnxruntime": "pip install -e '.[compare]'", "torch": "pip install torch (the CPU build)"}
    return (f"backend(s) not installed: {', '.join(missing)} ({'; '.join(how[b] for b in missing)})"
            if missing else None)


def _settings(args: argparse.Namespace, console: Console) -> Any:
    """The measurement settings `args` ask for; sets Numba's thread count (and warns when the machine is busy)."""
    from .suite import Settings

    threads = args.threads or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(threads)
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if threads > 1 and load > cores:
        console.print(f"[yellow]load average {load:.1f} on {cores} cores: timings with {threads} threads will "
                      f"include waits for descheduled workers; --threads 1 measures more steadily[/yellow]")
    return Settings(args.repeats, args.warmup, threads, tuple(split_csv(args.targets)), args.int8_path,
                    args.pass_target)


def _bad_arguments(args: argparse.Namespace) -> str | None:
    """One message naming what is wrong with the targets, backends or pipelines, or None."""
    return (unknown_targets(split_csv(args.targets)) or _check_backends(split_csv(args.backends))
            or _bad_pipelines(args.pipelines or []))


def _bad_pipelines(pipelines: list[str]) -> str | None:
    """The first pipeline string that does not parse, as a message naming --pipelines, or None."""
    from ..passes import PipelineError, parse_pipeline

    for text in pipelines:
        try:
            parse_pipeline(text)
        except PipelineError as e:
            return _message(e)
    return None


def _prebuild(models: list[tuple[str, Any, Any, Any]], configs: list[Config], settings: Any,
              args: argparse.Namespace, console: Console) -> Any:
    """Compile the Numba rows' kernels in `--compile-workers` processes before anything is timed (None if 1)."""
    from .prebuild import numba_jobs, prebuild

    jobs = numba_jobs(models, configs)
    if args.compile_workers < 2 or len(jobs) < 2:
        return None
    with progress_bar(console, len(jobs)) as advance:
        report = prebuild(jobs, settings, args.compile_workers, advance)
    failed = report.worker_failures()
    if failed:
        console.print(f"[yellow]{len(failed)} configurations were not compiled ahead ({escape(failed[0])}); "
                      f"they compile in this process as they come[/yellow]")
    return report


def _report(runs: list[Any], args: argparse.Namespace, console: Console, wall: float, title: str,
            extra: dict[str, Any] | None = None, prebuilt: Any = None) -> None:
    """Print the measured and the emulated tables, then write the JSON, figures and page asked for."""
    from .artifacts import write_outputs
    from .report import environment, estimate_table, failures, measured_table

    targets = split_csv(args.targets)
    threads = numba.get_num_threads()
    rows = [r for run in runs for r in run.rows]
    loaded_s = sum(r.jit_ms or 0.0 for r in rows) / 1e3
    if prebuilt is not None:
        prebuilt.credit(rows)
    jit_s = sum(r.jit_ms or 0.0 for r in rows) / 1e3
    console.print(measured_table(rows, f"{title}: median ms after warm-up ({args.repeats} runs, spread = IQR), "
                                       f"speed-up vs numba fp32 (unfused), threads {threads}"))
    for line in failures(rows):
        console.print(f"[red]failed: {escape(line)}[/red]")
    if targets:
        console.print(estimate_table(rows, targets))
    for line in (extra or {}).get("verdicts", []):
        console.print(escape(line))
    int8 = sorted({r.int8_path for r in rows if r.int8_path})
    if prebuilt is not None and prebuilt.workers:
        compiled = (f"kernel compilation {prebuilt.wall_s + loaded_s:.1f} s: {prebuilt.wall_s:.1f} s in "
                    f"{prebuilt.workers} processes at once ({prebuilt.compiler_s:.1f} s of compiler time), then "
                    f"{loaded_s:.1f} s here")
    else:
        compiled = f"kernel compilation {jit_s:.1f} s"
    console.print(f"int8 path: {', '.join(int8) or 'none used'}; wall {wall:.1f} s, of which {compiled} (first "
                  f"runs compile, later ones load the disk cache)")
    settings_json = {"models": [run.model for run in runs], "configs": list(dict.fromkeys(r.config for r in rows)),
                     "targets": targets, "repeats": args.repeats, "warmup": args.warmup, "threads": threads,
                     "wall_s": wall, "jit_s": jit_s,
                     "compile_workers": prebuilt.workers if prebuilt is not None else 0,
                     "prebuild_wall_s": prebuilt.wall_s if prebuilt is not None else 0.0}
    write_outputs(runs, environment(threads, rows), settings_json, args.json_path, args.plot_dir, args.html_path,
                  console, title, extra)


def _cmd_case_study(args: argparse.Namespace, console: Console) -> int:
    """`bench case-study`: each technique alone then stacked on MiniLM and a BERT-base layer, with the verdicts."""
    from .case_study import CASE_STUDY_CONFIGS, case_models, verdicts
    from .peers import available_peers
    from .suite import run_model

    bad = _bad_arguments(args)
    if bad:
        console.print(f"[red]{escape(bad)}[/red]")
        return 2
    configs = [c for c in select(CASE_STUDY_CONFIGS, split_csv(args.backends))
               if not c.is_peer or c.backend in available_peers()]
    settings = _settings(args, console)
    t0 = time.perf_counter()
    models = case_models()
    built = _prebuild([(m.name, m.graph, m.inputs, None) for m in models], configs, settings, args, console)
    runs = []
    with progress_bar(console, len(models) * len(configs)) as advance:
        for m in models:
            runs.append(run_model(m.name, m.graph, m.inputs, configs, settings, progress=advance))
    rows = [r for run in runs for r in run.rows]
    _report(runs, args, console, time.perf_counter() - t0, "tensorsmith case study",
            {"verdicts": verdicts(rows)}, prebuilt=built)
    return 0


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    """`bench` / `bench run`: every model under every configuration, then the tables and the outputs asked for."""
    from .models import load_model
    from .peers import available_peers
    from .suite import run_model

    bad = _bad_arguments(args)
    if bad:
        console.print(f"[red]{escape(bad)}[/red]")
        return 2
    configs = [c for c in chosen_configs(args) if not c.is_peer or c.backend in available_peers()]
    settings = _settings(args, console)
    names = split_csv(args.models or ",".join(DEFAULT_MODELS))
    runs = []
    t0 = time.perf_counter()
    models = {}
    for name in names:
        try:
            models[name] = load_model(name)
        except (KeyError, ValueError, ImportError) as e:
            console.print(f"[red]{escape(name)}: {escape(_message(e))}[/red]")
            return 2
    built = _prebuild([(n, m.graph, m.inputs, m.exits) for n, m in models.items()], configs, settings, args, console)
    with progress_bar(console, len(names) * len(configs)) as advance:
        for name, model in models.items():
            runs.append(run_model(name, model.graph, model.inputs, configs, settings, model.quality, model.metric_name,
                                  advance, exits=model.exits))
    _report(runs, args, console, time.perf_counter() - t0, "tensorsmith bench", prebuilt=built)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bench` console script."""
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console.width = 220  # pipes and CI logs: keep table rows on one line
    if args.list or args.command == "list":
        return _cmd_list(console)
    if args.command == "calibrate":
        return _cmd_calibrate(args, console)
    if args.command == "cost":
        return _cmd_cost(args, console)
    if args.command == "bisect":
        return _cmd_bisect(args, console)
    if args.command == "sweep":
        from .sweep import cmd_sweep

        return cmd_sweep(args, console)
    if (args.repeats < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1)
            or args.compile_workers < 1):
        console.print("[red]--repeats must be >= 1, --warmup >= 0, --threads >= 1 and --compile-workers >= 1[/red]")
        return 2
    return _cmd_case_study(args, console) if args.command == "case-study" else _cmd_run(args, console)


def _message(e: Exception) -> str:
    """The text of `e` as a command-line user reads it: flags named instead of Python arguments."""
    from ..backends.cost import list_targets
    from ..passes import PipelineError, TargetRequiredError

    if isinstance(e, TargetRequiredError):
        return (f"{e.pass_text} in --pipelines needs a target: add --pass-target NAME "
                f"(one of {', '.join(list_targets())})")
    if isinstance(e, PipelineError):
        return f"--pipelines: {e}"
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


if __name__ == "__main__":
    sys.exit(main())
