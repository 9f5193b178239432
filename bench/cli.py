"""The `bench` command: models through pipelines and backends, side by side."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numba
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
    ratio_vs_peer: float | None = None  # peer median / this median (> 1: faster than the peer)


def _available_backends() -> list[str]:
    from .. import runtime

    runtime._load_optional_backends()
    return sorted(runtime.BACKENDS, key=lambda b: (b != "reference", b))


def _median_ms(fn: Callable[[], Any], repeats: int, warmup: int) -> float:
    """Median milliseconds of `fn`; a short pause first lets other thread pools' spinning workers sleep."""
    from .calibrate import median_time

    time.sleep(0.1)
    return median_time(fn, repeats, warmup) * 1e3


def bench_model(name: str, backends: list[str], pipeline: str, repeats: int, warmup: int,
                peers: list[str] | None = None, pass_target: str | None = None) -> tuple[list[BenchRow], Any]:
    """Load `name`, run `pipeline` on it, and time it on each backend and peer (median of `repeats`).

    Returns the rows and the optimized graph (for the cost model).
    """
    from .. import runtime
    from ..passes import run_pipeline
    from .models import load_model
    from .peers import peer_runner

    model = load_model(name)
    g = model.graph
    g2 = run_pipeline(g, pipeline, target=pass_target) if pipeline else g
    runners: list[tuple[str, float, Callable[[Mapping[str, np.ndarray]], Any]]] = []
    for backend in backends:
        t0 = time.perf_counter()
        exe = runtime.compile(g2, backend=backend)
        runners.append((backend, (time.perf_counter() - t0) * 1e3, exe.run))
    for peer in peers or []:
        t0 = time.perf_counter()
        try:
            fn = peer_runner(peer, g2, numba.get_num_threads())
        except Exception as e:  # noqa: BLE001 - a peer that cannot load the model is reported, not fatal
            print(f"{name}: {peer} cannot run it ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
            continue
        runners.append((f"{peer} (peer)", (time.perf_counter() - t0) * 1e3, fn))
    rows: list[BenchRow] = []
    for label, compile_ms, run in runners:
        median = _median_ms(lambda run=run: run(model.inputs), repeats, warmup)
        rows.append(BenchRow(
            model=name, backend=label, nodes_before=len(g.nodes), nodes_after=len(g2.nodes),
            parameters=g2.num_parameters(), param_bytes=g2.parameter_bytes(), compile_ms=compile_ms,
            median_ms=median, repeats=repeats, metric=model.metric_name, quality=float(model.quality(run)),
        ))
    ref = next((r.median_ms for r in rows if r.backend == "reference"), None)
    peer_ms = next((r.median_ms for r in rows if r.backend.endswith("(peer)")), None)
    for r in rows:
        r.ratio_vs_reference = ref / r.median_ms if ref else None
        r.ratio_vs_peer = peer_ms / r.median_ms if peer_ms and not r.backend.endswith("(peer)") else None
    return rows, g2


def render(rows: list[BenchRow], console: Console) -> None:
    """Print `rows` as a table."""
    t = Table(title="tensorsmith bench (latency: median after warm-up; speed-up vs the reference backend and "
                    "vs the peer, > 1 is faster)")
    for col in ("model", "backend", "nodes", "params", "MB", "compile ms", "median ms", "vs reference", "vs peer",
                "quality"):
        t.add_column(col, justify="left" if col in ("model", "backend") else "right")
    for r in rows:
        t.add_row(
            r.model, r.backend, f"{r.nodes_before} -> {r.nodes_after}", f"{r.parameters:,}",
            f"{r.param_bytes / 1e6:.2f}", f"{r.compile_ms:.1f}", f"{r.median_ms:.3f}",
            f"{r.ratio_vs_reference:.2f}x" if r.ratio_vs_reference else "-",
            f"{r.ratio_vs_peer:.2f}x" if r.ratio_vs_peer else "-",
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


def _split(csv: str) -> list[str]:
    return [x.strip() for x in csv.split(",") if x.strip()]


def _unknown_targets(targets: list[str]) -> str | None:
    """None when every target loads, else one message naming those that do not."""
    from ..backends.cost import TargetError, load_target

    bad = []
    for t in targets:
        try:
            load_target(t)
        except (TargetError, OSError) as e:
            bad.append(f"{t}: {e}")
    return "; ".join(bad) or None


def _unknown_peers(peers: list[str]) -> str | None:
    """None when every peer is known and installed, else one message saying which is not."""
    from .peers import PEERS, available_peers

    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        return f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}"
    missing = [p for p in peers if p not in available_peers()]
    return f"peer(s) not installed: {', '.join(missing)} (pip install -e '.[compare]')" if missing else None


def _cmd_cost(args: argparse.Namespace, console: Console) -> int:
    """`bench cost`: the per-node cost table of each model on each target (no kernel runs)."""
    from ..backends.cost import CostError, estimate
    from ..passes import run_pipeline
    from .models import load_model

    bad = _unknown_targets(_split(args.targets))
    if bad:
        console.print(f"[red]{escape(bad)}[/red]")
        return 2
    for name in _split(args.models):
        try:
            g = load_model(name).graph
        except (KeyError, ValueError, ImportError) as e:
            console.print(f"[red]{escape(name)}: {escape(_message(e))}[/red]")
            return 2
        g = run_pipeline(g, args.pipeline, target=args.pass_target) if args.pipeline else g
        for tg in _split(args.targets):
            try:
                console.print(estimate(g, tg).to_rich())
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
    """`bench bisect SOURCE --pipeline P --tol T`: the first pass, and node, where outputs leave the tolerance."""
    from ..passes import bisect

    if not args.source:
        console.print("[red]bench bisect needs a zoo model name or a .onnx / .ir file[/red]")
        return 2
    try:
        graph, inputs = load_source(args.source)
        result = bisect(graph, args.pipeline, inputs, args.tol)
    except (KeyError, ValueError, ImportError) as e:
        console.print(f"[red]{escape(args.source)}: {escape(_message(e))}[/red]")
        return 2
    console.print(escape(str(result)), highlight=False)
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `bench`."""
    from ..passes import DEFAULT_CLEANUP
    from .estimates import DEFAULT_TARGETS

    p = argparse.ArgumentParser(
        prog="bench",
        description="Run models of the zoo through a pass pipeline and backends; print a table of measured "
                    "latencies (with ONNX Runtime as a peer when installed) and the cost model's estimates per target.",
    )
    p.add_argument("command", nargs="?", default="run", choices=("run", "list", "cost", "calibrate", "bisect"),
                   help="run (default): benchmark models; list: show the zoo; cost: per-node cost tables per "
                        "target; calibrate: measure this CPU; bisect: find the pass (and node) where outputs "
                        "leave --tol")
    p.add_argument("source", nargs="?", default=None,
                   help="bisect: a zoo model name or a .onnx / .ir file (files get seeded random inputs)")
    p.add_argument("--list", action="store_true", help="same as `bench list`")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help=f"comma-separated zoo names (default: {','.join(DEFAULT_MODELS)})")
    p.add_argument("--backends", default="", help="comma-separated backends (default: all available)")
    p.add_argument("--peers", default=None,
                   help="peers timed in the same run (default: onnxruntime when installed; '' for none)")
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                   help=f"cost-model targets to estimate on (default: {','.join(DEFAULT_TARGETS)}; '' for none)")
    p.add_argument("--pipeline", default=DEFAULT_CLEANUP, help=f"pass pipeline (default: {DEFAULT_CLEANUP!r})")
    p.add_argument("--pass-target", default=None,
                   help="target the pipeline's hardware-aware passes ask (e.g. for prune{pattern=auto})")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    p.add_argument("--json", dest="json_path", default=None, help="also write the rows as JSON here")
    p.add_argument("--out", default=None, help="calibrate: where to write the cpu-host TOML")
    p.add_argument("--tol", type=float, default=1e-5,
                   help="bisect: largest allowed |difference| of an output from the original graph's")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bench` console script."""
    from .estimates import EstimateRow, estimate_model, render_estimates
    from .peers import available_peers

    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console.width = 200  # pipes and CI logs: keep table rows on one line
    if args.list or args.command == "list":
        return _cmd_list(console)
    if args.command == "calibrate":
        return _cmd_calibrate(args, console)
    if args.command == "cost":
        return _cmd_cost(args, console)
    if args.command == "bisect":
        return _cmd_bisect(args, console)
    if args.repeats < 1 or args.warmup < 0:
        console.print("[red]--repeats must be >= 1 and --warmup >= 0[/red]")
        return 2
    backends = _split(args.backends) or _available_backends()
    peers = available_peers() if args.peers is None else _split(args.peers)
    targets = _split(args.targets)
    bad = _unknown_targets(targets) or _unknown_peers(peers)
    if bad:
        console.print(f"[red]{escape(bad)}[/red]")
        return 2
    rows: list[BenchRow] = []
    estimates: list[EstimateRow] = []
    for name in _split(args.models):
        try:
            model_rows, g2 = bench_model(name, backends, args.pipeline, args.repeats, args.warmup, peers,
                                         pass_target=args.pass_target)
        except (KeyError, ValueError, ImportError) as e:
            console.print(f"[red]{escape(name)}: {escape(_message(e))}[/red]")
            return 2
        rows += model_rows
        if targets:
            ours = [r for r in model_rows if not r.backend.endswith("(peer)")]
            fastest = min(ours, key=lambda r: r.median_ms) if ours else None
            estimates.append(estimate_model(name, g2, targets, fastest.backend if fastest else None,
                                            fastest.median_ms if fastest else None))
    render(rows, console)
    if estimates:
        console.print(render_estimates(estimates, targets))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"runs": [asdict(r) for r in rows], "estimates": [asdict(e) for e in estimates]}, f,
                      indent=2, default=_jsonable)
    return 0


def _message(e: Exception) -> str:
    """The text of `e` (a KeyError's own str() adds quotes)."""
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x))


if __name__ == "__main__":
    sys.exit(main())
