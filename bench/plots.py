"""`bench --plot`: latency bars, speed-up vs quality (Pareto front), rooflines, sparsity map, quantization errors.

matplotlib is optional (`pip install tensorsmith[plot]`) and imported only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import reference
from ..backends.cost import CostError
from ..backends.cost.roofline import plot_roofline, roofline
from ..ir import Graph
from .measure import Row
from .suite import ModelRun

SPARSE_CONFIGS = ("block-sparse", "pruning alone")
QDQ_CONFIGS = ("int4 weight-only",)
ROOFLINE_CONFIGS = ("numba fused", "fusion alone")
"""Configurations (of `bench` and of `bench case-study`) whose graphs the weight plots and the rooflines read."""


def _graph(run: ModelRun, names: tuple[str, ...]) -> tuple[str, Graph] | None:
    """The first of `names` that ran on `run`'s model, with its graph."""
    return next(((n, run.graphs[n]) for n in names if n in run.graphs), None)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("bench --plot needs matplotlib: pip install 'tensorsmith[plot]'") from e
    return plt


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (higher is better), by x."""
    front = [i for i, (x, y) in enumerate(points)
             if not any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for x2, y2 in points)]
    return sorted(front, key=lambda i: points[i][0])


def latency_bars(rows: Sequence[Row], path: Path) -> Path:
    """Horizontal bars of median latency (log scale), one per timed (model, configuration)."""
    plt = _pyplot()
    timed = [r for r in rows if r.median_ms]
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(timed) + 1.5))
    labels = [f"{r.model} / {r.config}" for r in timed]
    ax.barh(range(len(timed)), [r.median_ms for r in timed], xerr=[r.spread_ms or 0 for r in timed],
            color=["tab:orange" if r.backend == "onnxruntime" else "tab:blue" for r in timed])
    ax.set_yticks(range(len(timed)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median latency, ms (bars: IQR); orange: peer")
    ax.set_title("measured latency")
    return _save(fig, path)


def speedup_vs_quality(rows: Sequence[Row], path: Path) -> Path:
    """Speed-up over numba fp32 against cosine to reference fp32, per model, with each model's Pareto front."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model in dict.fromkeys(r.model for r in rows):
        pts = [(r.cosine, r.speedup, r.config) for r in rows if r.model == model and r.speedup and r.cosine]
        if not pts:
            continue
        sc = ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, label=model)
        for x, y, name in pts:
            ax.annotate(name, (x, y), fontsize=6, alpha=0.7)
        front = pareto_front([(p[0], p[1]) for p in pts])
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "--", color=sc.get_facecolor()[0],
                linewidth=1)
    ax.set_xlabel("cosine to reference fp32")
    ax.set_ylabel("speed-up vs numba fp32")
    ax.set_yscale("log")
    ax.set_title("speed-up vs quality (dashed: Pareto front)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def rooflines(run: ModelRun, targets: Sequence[str], folder: Path) -> list[Path]:
    """One roofline per target with the nodes of the model's fused fp32 graph (else its fp32 graph) on it (emulated)."""
    found = _graph(run, ROOFLINE_CONFIGS)
    g = found[1] if found else run.fp32_graph
    plt = _pyplot()
    out = []
    for t in targets:
        try:
            data = roofline(g, t)
        except CostError:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        plot_roofline(data, ax=ax)
        out.append(_save(fig, folder / f"roofline-{run.model}-{t}.png"))
    return out


def sparsity_heatmap(run: ModelRun, path: Path) -> Path | None:
    """|w| of the largest pruned weight of the block-sparse graph, zeros white; None when nothing was pruned."""
    found = _graph(run, SPARSE_CONFIGS)
    g = found[1] if found else None
    weights = [v for v in (g.constants if g else []) if v.type.sparsity is not None and v.data is not None]
    if not weights:
        return None
    w = max(weights, key=lambda v: v.type.numel)
    a = np.abs(np.asarray(w.data, np.float64)).reshape(w.type.shape[0], -1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    im = ax.imshow(np.ma.masked_equal(a, 0.0), aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="|w|")
    ax.set_title(f"{run.model}: {w.name} {list(w.type.shape)}, density {np.count_nonzero(a) / a.size:.2f}")
    ax.set_xlabel("input (K)")
    ax.set_ylabel("output (N)")
    return _save(fig, path)


def quantization_errors(fp32: Graph, quantized: Graph) -> tuple[str, np.ndarray] | None:
    """(layer, dequantized weight - fp32 weight) of the largest weight read through a `dequantize`, or None."""
    fp32_weights = {n.name: n.inputs[1] for n in fp32.nodes if len(n.inputs) > 1 and n.inputs[1].data is not None}
    best = None
    for n in quantized.nodes:
        if len(n.inputs) < 2 or n.name not in fp32_weights:
            continue
        dq = n.inputs[1].producer
        if dq is None or dq.op != "dequantize" or dq.inputs[0].data is None:
            continue
        if best is None or dq.inputs[0].type.numel > best[1].inputs[0].type.numel:
            best = (n, dq)
    if best is None:
        return None
    node, dq = best
    (w_hat,) = reference.evaluate_node(dq, [v.data for v in dq.inputs])
    return node.name, np.asarray(w_hat, np.float64) - np.asarray(fp32_weights[node.name].data, np.float64)


def quantization_histogram(run: ModelRun, path: Path) -> Path | None:
    """Histogram of one layer's weight error after weight-only quantization; None without such a graph."""
    config = _graph(run, QDQ_CONFIGS)
    found = quantization_errors(run.fp32_graph, config[1]) if config is not None else None
    if config is None or found is None:
        return None
    layer, err = found
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(err.ravel(), bins=80, color="tab:purple")
    ax.set_xlabel("dequantized - fp32 weight")
    ax.set_ylabel("weights")
    ax.set_title(f"{run.model}: {config[0]} error of layer {layer} (max {np.max(np.abs(err)):.3g})")
    return _save(fig, path)


def write_plots(runs: Sequence[ModelRun], targets: Sequence[str], folder: str | Path) -> list[Path]:
    """Every figure for `runs` into `folder` (created); returns the files written."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    rows = [r for run in runs for r in run.rows]
    out = [latency_bars(rows, d / "latency.png"), speedup_vs_quality(rows, d / "speedup-vs-quality.png")]
    for run in runs:
        out += rooflines(run, targets, d)
        for made in (sparsity_heatmap(run, d / f"sparsity-{run.model}.png"),
                     quantization_histogram(run, d / f"quant-error-{run.model}.png")):
            if made is not None:
                out.append(made)
    return out


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
