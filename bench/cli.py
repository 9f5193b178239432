"""The `bench` command: models through pipelines and backends, side by side."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

DEFAULT_MODELS = ("mlp", "cnn", "transformer-block")
"""What plain `bench` runs: the built-in models, which need no optional package."""


@dataclass
class BenchRow:
    """One (model, backend) measurement."""

    model: str
    backend: str
    nodes_before: int
    nodes_after: int
    parameters: int
    param_bytes: int
    compile_ms: float
    median_ms: float
    repeats: int
    metric: str
    quality: float
    ratio_vs_reference: float | None = None


def _available_backends() -> list[str]:
    from .. import runtime

    runtime._load_optional_backends()
    return sorted(runtime.BACKENDS, key=lambda b: (b != "reference", b))


def bench_model(name: str, backends: list[str], pipeline: str, repeats: int, warmup: int) -> list[BenchRow]:
    """Load `name`, run `pipeline` on it, and time it on each backend (median of `repeats`)."""
    from .. import runtime
    from ..passes import run_pipeline
    from .models import load_model

    model = load_model(name)
    g = model.graph
    g2 = run_pipeline(g, pipeline) if pipeline else g
    rows: list[BenchRow] = []
    ref_ms = None
    for backend in backends:
        t0 = time.perf_counter()
        exe = runtime.compile(g2, backend=backend)
        compile_ms = (time.perf_counter() - t0) * 1e3
        median = exe.median_seconds(model.inputs, repeats=repeats, warmup=warmup) * 1e3
        quality = float(model.quality(exe.run))
        if backend == "reference":
            ref_ms = median
        rows.append(BenchRow(
            model=name, backend=backend, nodes_before=len(g.nodes), nodes_after=len(g2.nodes),
            parameters=g2.num_parameters(), param_bytes=g2.parameter_bytes(), compile_ms=compile_ms,
            median_ms=median, repeats=repeats, metric=model.metric_name, quality=quality,
            ratio_vs_reference=(ref_ms / median) if ref_ms else None,
        ))
    return rows


def render(rows: list[BenchRow], console: Console) -> None:
    """Print `rows` as a table."""
    t = Table(title="tensorsmith bench (latency: median after warm-up; speed-up vs the reference backend)")
    for col in ("model", "backend", "nodes", "params", "MB", "compile ms", "median ms", "speed-up", "quality"):
        t.add_column(col, justify="left" if col in ("model", "backend") else "right")
    for r in rows:
        t.add_row(
            r.model, r.backend, f"{r.nodes_before} -> {r.nodes_after}", f"{r.parameters:,}",
            f"{r.param_bytes / 1e6:.2f}", f"{r.compile_ms:.1f}", f"{r.median_ms:.3f}",
            f"{r.ratio_vs_reference:.2f}x" if r.ratio_vs_reference else "-",
            f"{r.metric}={r.quality:.4g}",
        )
    console.print(t)


def _cmd_list(console: Console) -> int:
    from .models import list_models

    t = Table(title="model zoo")
    for col in ("name", "available", "description"):
        t.add_column(col)
    for m in list_models():
        avail = "yes" if m.available else f"no: {m.reason}" if getattr(m, "reason", "") else "no"
        t.add_row(m.name, escape(avail), escape(m.description))
    console.print(t)
    return 0


def _cmd_calibrate(args: argparse.Namespace, console: Console) -> int:
    try:
        from .calibrate import calibrate
    except ImportError as e:
        console.print(f"[red]calibration is not available: {e}[/red]")
        return 2
    result = calibrate(out_path=args.out)
    console.print_json(json.dumps(result, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `bench`."""
    from ..passes import DEFAULT_CLEANUP

    p = argparse.ArgumentParser(
        prog="bench",
        description="Run models of the zoo through a pass pipeline and backends; print a table.",
    )
    p.add_argument("command", nargs="?", default="run", choices=("run", "list", "calibrate"),
                   help="run (default): benchmark models; list: show the zoo; calibrate: measure this CPU")
    p.add_argument("--list", action="store_true", help="same as `bench list`")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help=f"comma-separated zoo names (default: {','.join(DEFAULT_MODELS)})")
    p.add_argument("--backends", default="", help="comma-separated backends (default: all available)")
    p.add_argument("--pipeline", default=DEFAULT_CLEANUP, help=f"pass pipeline (default: {DEFAULT_CLEANUP!r})")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    p.add_argument("--json", dest="json_path", default=None, help="also write the rows as JSON here")
    p.add_argument("--out", default=None, help="calibrate: where to write the cpu-host TOML")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bench` console script."""
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console.width = 160  # pipes and CI logs: keep table rows on one line
    if args.list or args.command == "list":
        return _cmd_list(console)
    if args.command == "calibrate":
        return _cmd_calibrate(args, console)
    if args.repeats < 1 or args.warmup < 0:
        console.print("[red]--repeats must be >= 1 and --warmup >= 0[/red]")
        return 2
    backends = [b for b in args.backends.split(",") if b] or _available_backends()
    rows: list[BenchRow] = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        try:
            rows += bench_model(name, backends, args.pipeline, args.repeats, args.warmup)
        except (KeyError, ValueError, ImportError) as e:
            console.print(f"[red]{escape(name)}: {escape(str(e))}[/red]")
            return 2
    render(rows, console)
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=2, default=_jsonable)
    return 0


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x))


if __name__ == "__main__":
    sys.exit(main())
