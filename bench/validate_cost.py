"""Validate the cost model: systolic cycles against SCALE-Sim, and cpu-host predictions against
kernel times measured on this machine. Results go to docs/cost-model.md.

    python -m tensorsmith.bench.validate_cost scalesim      # needs `pip install tensorsmith[validate]`
    python -m tensorsmith.bench.validate_cost cpu [--backend numba|reference]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends.cost import MatrixUnit, estimate, load_target, systolic_cycles
from ..ir import GraphBuilder, QuantInfo, SparsityInfo, TensorType, Value, f32, i8
from .options import check_models, positive_int, reject_unknown, runtime_backends

# ---- SCALE-Sim ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """A GEMM (M, N, K) or a convolution (input H, W, C; filters F of R x S; stride; pad) to simulate."""

    name: str
    gemm: tuple[int, int, int] | None = None
    conv: tuple[int, int, int, int, int, int, int, int] | None = None  # H, W, C, F, R, S, stride, pad


LAYERS = (
    Layer("gemm 1024^3", gemm=(1024, 1024, 1024)),
    Layer("gemm 512^3", gemm=(512, 512, 512)),
    Layer("gemm 128^3", gemm=(128, 128, 128)),
    Layer("BERT-base QKV proj (128x768x768)", gemm=(128, 768, 768)),
    Layer("BERT-base FFN up (128x3072x768)", gemm=(128, 3072, 768)),
    Layer("BERT-base FFN down (128x768x3072)", gemm=(128, 768, 3072)),
    Layer("ResNet-50 conv2_x 3x3 (56x56x64->64)", conv=(56, 56, 64, 64, 3, 3, 1, 1)),
    Layer("ResNet-50 conv4_x 1x1 (14x14x1024->256)", conv=(14, 14, 1024, 256, 1, 1, 1, 0)),
    Layer("ResNet-50 conv1 7x7/2 (224x224x3->64)", conv=(224, 224, 3, 64, 7, 7, 2, 3)),
)


def _patch_scalesim_for_numpy2() -> None:
    """SCALE-Sim 3.0.0 calls int(max(list of 1-element arrays)), which numpy 2 rejects; give its memory
    modules a `max` that returns a scalar (module globals shadow the builtin there only)."""
    import builtins

    from scalesim.memory import double_buffered_scratchpad_mem, read_buffer, read_buffer_estimate_bw, write_buffer

    def scalar_max(*args: Any, **kw: Any) -> Any:
        r = builtins.max(*args, **kw)
        return np.asarray(r).reshape(-1)[0] if np.ndim(r) else r

    for mod in (double_buffered_scratchpad_mem, read_buffer, read_buffer_estimate_bw, write_buffer):
        mod.max = scalar_max  # type: ignore[attr-defined]


def scalesim_cycles(layer: Layer, dataflow: str, rows: int = 128, cols: int = 128) -> dict[str, int]:
    """Run SCALE-Sim's single-layer simulator through its Python API; returns its compute and total cycles."""
    from scalesim.layout_utils import layouts
    from scalesim.scale_config import scale_config
    from scalesim.single_layer_sim import single_layer_sim
    from scalesim.topology_utils import topologies

    _patch_scalesim_for_numpy2()
    cfg = scale_config()
    cfg.array_rows, cfg.array_cols, cfg.df = rows, cols, dataflow
    cfg.ifmap_sz_kb = cfg.filter_sz_kb = cfg.ofmap_sz_kb = 64 * 1024  # no capacity stalls: compute cycles only
    cfg.use_user_bandwidth = False
    cfg.valid_conf_flag = True
    if layer.gemm is not None:  # SCALE-Sim's own GEMM encoding: ifmap M x K, filter 1 x K, N filters
        m, n, k = layer.gemm
        entry = [layer.name, m, k, 1, k, 1, n, 1, 1, 1, 1]
    else:
        h, w, c, f, r, s, stride, pad = layer.conv  # type: ignore[misc]
        entry = [layer.name, h + 2 * pad, w + 2 * pad, r, s, c, f, stride, stride, 1, 1]
    topo = topologies()
    topo.append_topo_arrays(layer.name, entry)
    topo.num_layers, topo.topo_load_flag = 1, True
    sim = single_layer_sim()
    sim.set_params(layer_id=0, config_obj=cfg, topology_obj=topo, layout_obj=layouts(), verbose=False)
    sim.run()
    items = sim.get_compute_report_items()
    return {"compute_cycles": int(items[1]), "total_cycles": int(items[0])}


def model_cycles(layer: Layer, dataflow: str, rows: int = 128, cols: int = 128) -> int:
    """Cycles the cost model predicts for `layer` on one rows x cols array, going through the IR and COST_RULES."""
    rng = np.random.default_rng(0)
    b = GraphBuilder(layer.name.split()[0])
    if layer.gemm is not None:
        m, n, k = layer.gemm
        x = b.input("x", f32[m, k])
        y = b.linear(x, rng.standard_normal((n, k), dtype=np.float32), name="layer")
    else:
        h, w, c, f, r, s, stride, pad = layer.conv  # type: ignore[misc]
        x = b.input("x", f32[1, c, h, w])
        y = b.conv2d(x, rng.standard_normal((f, c, r, s), dtype=np.float32), strides=(stride, stride), pads=pad,
                     name="layer")
    b.output(y)
    # one rows x cols array running at one multiply-accumulate per cell per cycle in the graph's precision
    t = load_target("tpu-v4")
    t = t.replace(matrix=MatrixUnit("systolic", tile=(rows, cols, 1), rows=rows, cols=cols, dataflow=dataflow,
                                    count=1), peak={"fp32": rows * cols * 2 * t.clock_hz})
    cost = estimate(b.build(), t)
    return cost["layer"].cycles


def run_scalesim(dataflows: tuple[str, ...] = ("ws", "os")) -> list[dict[str, Any]]:
    """Every layer of LAYERS in every dataflow: SCALE-Sim cycles, model cycles, closed form, error."""
    rows = []
    for layer in LAYERS:
        for df in dataflows:
            t0 = time.perf_counter()
            sim = scalesim_cycles(layer, df)
            secs = time.perf_counter() - t0
            mine = model_cycles(layer, df)
            rows.append({"layer": layer.name, "dataflow": df, "scalesim_cycles": sim["compute_cycles"],
                         "scalesim_total_cycles": sim["total_cycles"], "model_cycles": mine,
                         "error_pct": 100 * (mine - sim["compute_cycles"]) / sim["compute_cycles"],
                         "sim_seconds": round(secs, 2)})
    return rows


def _closed_form_check() -> None:
    assert systolic_cycles(1024, 1024, 1024, 128, 128, "ws").cycles == 89983  # BASELINES.md


# ---- CPU: predictions against measured kernel times -------------------------------------------------------


@dataclass(frozen=True)
class Kernel:
    """A one-kernel graph of the CPU suite and its inputs; `dense_only` kernels only mean something on a
    backend with int8 or sparse kernels (numpy runs int8 GEMMs without BLAS and sparse weights dense)."""

    name: str
    graph: Any
    inputs: dict[str, np.ndarray]
    special: bool = False


def _w(rng: np.random.Generator, shape: tuple[int, ...], sparsity: SparsityInfo | None = None,
       zero: np.ndarray | None = None) -> Value:
    data = rng.standard_normal(shape, dtype=np.float32) * 0.05
    if zero is not None:
        data = data * zero
    return Value("w", TensorType(shape, f32, sparsity=sparsity), np.ascontiguousarray(data))


def _linear_kernel(name: str, m: int, n: int, k: int, *, bias: bool = False, act: str | None = None,
                   weight: Value | None = None, special: bool = False) -> Kernel:
    rng = np.random.default_rng(0)
    b = GraphBuilder(name)
    x = b.input("x", f32[m, k])
    w = weight if weight is not None else _w(rng, (n, k))
    y = b.linear(x, w, np.zeros(n, np.float32) if bias else None)
    if act:
        y = b.op(act, y)
    b.output(y)
    return Kernel(name, b.build(), {"x": rng.standard_normal((m, k), dtype=np.float32)}, special)


def cpu_kernels() -> list[Kernel]:
    """The kernel suite: dense GEMMs (with epilogues), block-sparse and 2:4 GEMMs, int8 GEMM, convolutions,
    pooling, layer norm, softmax, attention and elementwise ops, each as its own small graph."""
    rng = np.random.default_rng(1)
    ks = [_linear_kernel("gemm fp32 256^3", 256, 256, 256), _linear_kernel("gemm fp32 1024^3", 1024, 1024, 1024),
          _linear_kernel("gemv 1x1024x1024", 1, 1024, 1024),
          _linear_kernel("BERT FFN up 128x3072x768 +bias", 128, 3072, 768, bias=True),
          _linear_kernel("linear+bias+relu 512^3", 512, 512, 512, bias=True, act="relu")]
    blocks = (rng.random((32, 32)) < 0.1).astype(np.float32)
    mask = np.kron(blocks, np.ones((32, 32), np.float32))
    ks.append(_linear_kernel("block-sparse 32x32 d=0.1 1024^3", 1024, 1024, 1024, special=True,
                             weight=_w(rng, (1024, 1024), SparsityInfo("block", float(blocks.mean()), (32, 32)),
                                       mask)))
    nm = np.tile(np.array([1, 1, 0, 0], np.float32), (1024, 256))
    ks.append(_linear_kernel("2:4 sparse 512x1024x1024", 512, 1024, 1024, special=True,
                             weight=_w(rng, (1024, 1024), SparsityInfo("nm", 0.5, n=2, m=4), nm)))
    q = QuantInfo((0.05,), (0,), 8)
    b = GraphBuilder("int8")
    x = b.input("x", TensorType((512, 512), i8, quant=q))
    wq = Value("w", TensorType((512, 512), i8, quant=q), rng.integers(-127, 128, (512, 512), dtype=np.int8))
    b.output(b.linear(x, wq))
    ks.append(Kernel("int8 gemm 512^3", b.build(), {"x": rng.integers(-127, 128, (512, 512), dtype=np.int8)}, True))
    for name, (c, h, f, r, pad) in {"conv 3x3 64x56x56->64": (64, 56, 64, 3, 1),
                                    "conv 1x1 256x28x28->128": (256, 28, 128, 1, 0)}.items():
        b = GraphBuilder("conv")
        x = b.input("x", f32[1, c, h, h])
        b.output(b.conv2d(x, rng.standard_normal((f, c, r, r), dtype=np.float32) * 0.05, pads=pad))
        ks.append(Kernel(name, b.build(), {"x": rng.standard_normal((1, c, h, h), dtype=np.float32)}))
    for name, shape, build in (
            ("maxpool 3x3/2 64x112x112", (1, 64, 112, 112), lambda b, x: b.maxpool2d(x, (3, 3), (2, 2), pads=1)),
            ("layernorm 128x768", (128, 768), lambda b, x: b.layernorm(x, np.ones(768, np.float32),
                                                                       np.zeros(768, np.float32))),
            ("softmax 12x128x128", (12, 128, 128), lambda b, x: b.softmax(x)),
            ("gelu 128x3072", (128, 3072), lambda b, x: b.gelu(x)),
            ("add 128x3072", (128, 3072), lambda b, x: b.add(x, x)),
            ("attention 12x128x64", (12, 128, 64), lambda b, x: b.matmul(
                b.softmax(b.matmul(x, b.transpose(x, (0, 2, 1)))), x))):
        b = GraphBuilder(name.split()[0])
        x = b.input("x", f32[shape])
        b.output(build(b, x))
        ks.append(Kernel(name, b.build(), {"x": rng.standard_normal(shape, dtype=np.float32)}))
    return ks


def measure_kernel(k: Kernel, backend: str, repeats: int) -> float:
    """Median seconds of one run of kernel `k` compiled for `backend`, after warm-up (JIT excluded)."""
    from .. import runtime

    exe = runtime.compile(k.graph, backend=backend)
    return exe.median_seconds(k.inputs, repeats=repeats, warmup=2)


def _measure_isolated(name: str, backend: str, repeats: int, threads: int | None = None) -> float:
    """measure_kernel in a child process, so that a crashing kernel is reported instead of ending the run."""
    import subprocess

    cmd = [sys.executable, "-m", "tensorsmith.bench.validate_cost", "kernel", name, "--backend", backend,
           "--repeats", str(repeats)]
    env = dict(os.environ)
    if threads:
        env.update(NUMBA_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    if res.returncode != 0:
        why = f"signal {-res.returncode}" if res.returncode < 0 else (res.stderr.strip().splitlines() or [""])[-1][:160]
        raise RuntimeError(f"child exited with {res.returncode} ({why})")
    return float(json.loads(res.stdout.strip().splitlines()[-1])["seconds"])


def run_cpu(kernels: list[Kernel], backend: str | None = None, repeats: int = 7, isolate: bool = False,
            threads: int | None = None, calibration: str | None = None) -> tuple[list[dict], dict]:
    """Measure each kernel (median after warm-up) and compare with the cpu-host prediction.

    With `isolate`, each kernel runs in its own process (a backend crash becomes a row's status);
    `threads` (implies `isolate`) limits those processes' threads; `calibration` is a cpu-host
    override file (from `calibrate --threads N --out FILE`) to predict with instead of the user's.
    """
    from scipy.stats import spearmanr

    from .. import runtime

    runtime.load_optional_backends()
    backend = backend or ("numba" if "numba" in runtime.BACKENDS else "reference")
    target = load_target("cpu-host", overrides=calibration if calibration else True)
    isolate = isolate or threads is not None
    if backend == "reference":  # numpy computes sparse weights dense: price them dense too
        target = target.replace(sparsity=())
    rows = []
    for k in kernels:
        row: dict[str, Any] = {"kernel": k.name}
        pred = estimate(k.graph, target)
        row.update(predicted_ms=pred.total.latency_s * 1e3, bound=",".join(sorted(pred.total.bounds)))
        try:
            secs = (_measure_isolated(k.name, backend, repeats, threads) if isolate
                    else measure_kernel(k, backend, repeats))
            row["measured_ms"] = secs * 1e3
            row["error_pct"] = 100 * (row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"]
            row["status"] = "not comparable (numpy int8/sparse)" if (k.special and backend == "reference") else "ok"
        except Exception as e:  # a backend without a kernel for this graph: reported, not hidden
            row.update(measured_ms=float("nan"), error_pct=float("nan"), status=f"not run: {type(e).__name__}: {e}")
        rows.append(row)
    ok = [r for r in rows if r["status"] == "ok"]
    errs = [abs(r["error_pct"]) for r in ok]
    rho = spearmanr([r["predicted_ms"] for r in ok], [r["measured_ms"] for r in ok]).statistic if len(ok) > 2 \
        else float("nan")
    label = ("Numba backend" if backend == "numba" else
             f"{backend} backend" + (" (numpy rules: the Numba backend is not available, so these are NOT the "
                                     "Numba kernels)" if backend == "reference" else ""))
    summary = {"backend": backend, "backend_label": label, "threads": threads or "all",
               "target": target.source, "kernels_compared": len(ok),
               "median_abs_error_pct": round(float(np.median(errs)), 1) if errs else float("nan"),
               "spearman": round(float(rho), 3), "targets": "median |error| < 25%, Spearman >= 0.9"}
    return rows, summary


def roofline_figure(model: str, out: str) -> str:
    """One roofline panel per shipped target for zoo model `model` (all points emulated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..backends.cost import list_targets, plot_roofline, roofline
    from .models import load_model

    g = load_model(model).graph
    names = list_targets()
    fig, axes = plt.subplots(2, (len(names) + 1) // 2, figsize=(4.2 * ((len(names) + 1) // 2), 7.5))
    for ax, name in zip(axes.flat, names):
        plot_roofline(roofline(g, name), ax=ax)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(f"{model}: predicted (emulated) node performance under each target's roofline")
    fig.tight_layout()
    fig.savefig(out, dpi=72)
    return out


def _markdown(rows: list[dict[str, Any]], cols: list[str]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.2f}" if isinstance(v, float) else (f"{v:,}" if isinstance(v, int) else str(v)))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Command line: `scalesim`, `cpu` or `all` (default)."""
    p = argparse.ArgumentParser(description="Validate the cost model against SCALE-Sim and this machine.")
    p.add_argument("what", nargs="?", default="all", choices=("all", "scalesim", "cpu", "roofline", "kernel"))
    p.add_argument("name", nargs="?", default=None, help="kernel: the suite kernel to time (used by --isolate)")
    p.add_argument("--isolate", action="store_true", help="cpu: time each kernel in its own process")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="cpu: threads per kernel process (implies --isolate)")
    p.add_argument("--calibration", default=None, help="cpu: cpu-host override file to predict with")
    p.add_argument("--model", default="bert-base-layer", help="roofline: zoo model to draw")
    p.add_argument("--out", default="roofline.png", help="roofline: image to write")
    p.add_argument("--backend", default=None, help="cpu: backend to measure (default: numba if available)")
    p.add_argument("--repeats", type=positive_int, default=7, help="cpu: timed runs per kernel (median)")
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.backend is not None:
        reject_unknown(p, "--backend", [args.backend], runtime_backends(), "backend")
    if args.what == "roofline":
        check_models(p, "--model", [args.model])
    result: dict[str, Any] = {}
    if args.what == "kernel":
        k = next((k for k in cpu_kernels() if k.name == args.name), None)
        if k is None:
            print(f"no kernel {args.name!r}; known: {[k.name for k in cpu_kernels()]}", file=sys.stderr)
            return 2
        print(json.dumps({"seconds": measure_kernel(k, args.backend or "reference", args.repeats)}))
        return 0
    if args.what == "roofline":
        print(f"wrote {roofline_figure(args.model, args.out)}")
        return 0
    if args.what in ("all", "scalesim"):
        try:
            import scalesim  # noqa: F401
        except ImportError:
            print("SCALE-Sim is not installed: pip install 'tensorsmith[validate]' (scalesim==3.0.0)")
            return 2
        _closed_form_check()
        rows = run_scalesim()
        worst = max(abs(r["error_pct"]) for r in rows)
        print("## Systolic cycles: cost model vs SCALE-Sim 3.0.0 (128x128 array, compute cycles)\n")
        print(_markdown(rows, ["layer", "dataflow", "scalesim_cycles", "model_cycles", "error_pct"]))
        print(f"\nworst |error|: {worst:.3f}% over {len(rows)} layer/dataflow pairs (target: < 5%)\n")
        result["scalesim"] = rows
    if args.what in ("all", "cpu"):
        rows, summary = run_cpu(cpu_kernels(), backend=args.backend, repeats=args.repeats, isolate=args.isolate,
                                threads=args.threads, calibration=args.calibration)
        print(f"## cpu-host: predicted vs measured ({summary['backend_label']})\n")
        print(_markdown(rows, ["kernel", "predicted_ms", "measured_ms", "error_pct", "bound", "status"]))
        print("\n" + "\n".join(f"{k}: {v}" for k, v in summary.items()))
        result["cpu"] = {"rows": rows, "summary": summary}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=lambda x: x.item() if hasattr(x, "item") else str(x))
    return 0


if __name__ == "__main__":
    sys.exit(main())

