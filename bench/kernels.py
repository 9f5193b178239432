"""Benchmark of the Numba backend's kernels and runtime against peers measured in the same run.

    python -m tensorsmith.bench.kernels                      # everything
    python -m tensorsmith.bench.kernels --sections gemm,conv --repeats 15

Sections: gemm (fp32 GEMM and fused bias+GELU vs numpy/OpenBLAS and ONNX Runtime), conv (ResNet-50
layer shapes vs PyTorch), dispatch (per-node overhead on a 200-node chain of tiny ops), arena
(arena size vs the naive sum of intermediates), models (whole models vs the numpy reference backend
and ONNX Runtime). Every figure is a median over --repeats runs after warm-up, all peers of a row
measured in the same run, each implementation in its own block (see `medians`). JIT compile time is
reported apart and never enters a timing.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from scipy import special

from ..backends import reference
from ..ir import Graph, GraphBuilder, f32
from ..ir.regions import make_region
from ..runtime.numba_exec import NumbaExecutable
from .options import positive_int, reject_unknown, split_csv
from .warmup import warm_up

SECTIONS = ("gemm", "conv", "dispatch", "arena", "models")
GEMM_SHAPES = ((1024, 1024, 1024), (128, 768, 768), (128, 768, 3072), (128, 3072, 768))
# ResNet-50 (batch 1): (C_in, H, C_out, kernel, stride)
RESNET_CONVS = ((3, 224, 64, 7, 2), (64, 56, 64, 1, 1), (64, 56, 64, 3, 1), (64, 56, 256, 1, 1),
                (256, 56, 128, 1, 2), (128, 28, 128, 3, 1), (256, 14, 256, 3, 1), (1024, 14, 2048, 1, 2),
                (512, 7, 512, 3, 1))
MODELS = ("mlp", "cnn", "bert-base-layer", "minilm-l6", "onnx-resnet50")


def has(module: str) -> bool:
    """Whether `module` can be imported."""
    return importlib.util.find_spec(module) is not None


def medians(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds of each callable over `repeats` runs after warm-up (at least `warmup` calls and
    WARMUP_SECONDS, as `bench` gives every configuration: two calls after the pause left sub-millisecond
    kernels timed on a CPU still raising its clock, 1.3-1.5x slower).

    Each implementation is timed in its own block (two rounds, the second in reverse order, a
    short pause before each block): numpy's OpenBLAS, ONNX Runtime, PyTorch and Numba each keep
    their worker threads spinning for a while after a call, and timing them back to back would
    make each pay for the other's spinning threads on a 2-core machine.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    for rnd in range(2):
        for k in order if rnd == 0 else order[::-1]:
            time.sleep(0.2)
            warm_up(fns[k], warmup)
            for _ in range(max(1, (repeats + 1 - rnd) // 2)):
                t0 = time.perf_counter()
                fns[k]()
                times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    """Print a plain-text table."""
    cells = [header] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n== {title}")
    for j, r in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def ort_session(graph: Graph, threads: int) -> Any | None:
    """An ONNX Runtime CPU session for `graph` with `threads` intra-op threads, or None."""
    if not has("onnxruntime"):
        return None
    import onnxruntime as ort

    from ..ir.onnx_export import to_onnx

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(to_onnx(graph).SerializeToString(), opts, providers=["CPUExecutionProvider"])


@numba.njit(parallel=True, fastmath=True, cache=True)
def loop_gemm(x: np.ndarray, wt: np.ndarray, out: np.ndarray) -> None:
    """out = x @ wt in plain Numba loops (i-k-j, rows in parallel): the no-BLAS alternative."""
    m, k = x.shape
    n = wt.shape[1]
    for i in numba.prange(m):
        o = out[i]
        for j in range(n):
            o[j] = 0.0
        for kk in range(k):
            a = x[i, kk]
            w = wt[kk]
            for j in range(n):
                o[j] += a * w[j]


def _linear_graph(m: int, k: int, n: int, rng: np.random.Generator, gelu: bool) -> Graph:
    b = GraphBuilder("linear")
    x = b.input("x", f32[m, k])
    y = b.linear(x, (rng.standard_normal((n, k)) / math.sqrt(k)).astype(np.float32),
                 rng.standard_normal(n).astype(np.float32), name="fc")
    b.output(b.gelu(y, name="act") if gelu else y)
    g = b.build()
    if gelu:  # linear + bias + GELU as one region: one kernel with the epilogue per tile
        make_region(g, g.nodes)
    return g


def _gemm_row(m: int, k: int, n: int, repeats: int, threads: int, rng: np.random.Generator) -> list[Any]:
    x = rng.standard_normal((m, k)).astype(np.float32)
    g_plain, g_gelu = _linear_graph(m, k, n, rng, False), _linear_graph(m, k, n, rng, True)
    w, w_g, bias = g_plain.constants[0].data, g_gelu.constants[0].data, g_gelu.constants[1].data
    e_plain, e_gelu = NumbaExecutable(g_plain), NumbaExecutable(g_gelu)
    wt = np.ascontiguousarray(w.T)
    out = np.empty((m, n), np.float32)
    feeds = {"x": x}

    def numpy_sep() -> np.ndarray:
        h = x @ w_g.T
        h = h + bias
        return 0.5 * h * (1.0 + special.erf(h * np.float32(0.7071067811865476)))

    fns: dict[str, Callable[[], Any]] = {
        "numpy @": lambda: x @ w.T, "numba gemm": lambda: e_plain.run(feeds), "loops": lambda: loop_gemm(x, wt, out),
        "numpy +bias+gelu": numpy_sep, "numba fused": lambda: e_gelu.run(feeds)}
    sess = ort_session(g_plain, threads)
    if sess is not None:
        fns["ort"] = lambda: sess.run(None, feeds)
    t = medians(fns, repeats)
    gf = 2 * m * n * k / 1e9
    return [f"{m}x{k}x{n}", gf / t["numpy @"], gf / t["numba gemm"], t["numpy @"] / t["numba gemm"],
            gf / t["loops"], gf / t["ort"] if "ort" in t else "-", t["numpy +bias+gelu"] / t["numba fused"],
            "+".join(e_gelu.stats["fused"][0]) if e_gelu.stats["fused"] else "-"]


def bench_gemm(repeats: int, threads: int) -> None:
    """fp32 GEMM and GEMM + bias + GELU: Numba backend vs numpy (OpenBLAS) vs ONNX Runtime."""
    rng = np.random.default_rng(0)
    rows = [_gemm_row(m, k, n, repeats, threads, rng) for m, k, n in GEMM_SHAPES]
    table("fp32 GEMM (GFLOP/s; ratios > 1 mean the Numba backend is faster)",
          ["M x K x N", "numpy@", "numba", "numba/numpy", "numba loops", "ORT", "fused vs numpy ops", "fused"],
          rows)


def _conv_row(shape: tuple[int, int, int, int, int], repeats: int, torch: Any, rng: np.random.Generator) -> list[Any]:
    ci, h, co, k, s = shape
    x = rng.standard_normal((1, ci, h, h)).astype(np.float32)
    w = (rng.standard_normal((co, ci, k, k)) / math.sqrt(ci * k * k)).astype(np.float32)
    bias = rng.standard_normal(co).astype(np.float32)
    b = GraphBuilder("conv")
    xv = b.input("x", f32[x.shape])
    b.output(b.conv2d(xv, w, bias, strides=(s, s), pads=k // 2))
    exe = NumbaExecutable(b.build())
    fns: dict[str, Callable[[], Any]] = {"numba": lambda: exe.run({"x": x})}
    if torch is not None:
        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias)

        def run_torch() -> Any:
            with torch.no_grad():
                return torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=k // 2)

        fns["torch"] = run_torch
    t = medians(fns, repeats)
    flops = 2 * co * ci * k * k * (exe.graph.outputs[0].type.numel // co)
    return [f"{ci}x{h}x{h} -> {co} k{k} s{s}", flops / t["numba"] / 1e9, t["numba"] * 1e3,
            t["torch"] * 1e3 if "torch" in t else "-", t["numba"] / t["torch"] if "torch" in t else "-"]


def bench_conv(repeats: int, threads: int) -> None:
    """conv2d on ResNet-50 layer shapes: Numba backend vs PyTorch CPU (when installed)."""
    torch = None
    if has("torch"):
        import torch

        torch.set_num_threads(threads)
    rng = np.random.default_rng(1)
    rows = [_conv_row(shape, repeats, torch, rng) for shape in RESNET_CONVS]
    table("conv2d, ResNet-50 layers, batch 1 (target: numba/torch <= 1.5)",
          ["layer", "numba GFLOP/s", "numba ms", "torch ms", "numba/torch"], rows)


def bench_dispatch(repeats: int) -> None:
    """Per-node overhead: a 200-node chain of tiny elementwise ops against a 1-node graph."""
    def chain(n: int) -> Graph:
        b = GraphBuilder(f"chain{n}")
        h = b.input("x", f32[16])
        for i in range(n):
            h = [lambda v: b.relu(v), lambda v: b.add(v, np.float32(0.5)), lambda v: b.neg(v),
                 lambda v: b.mul(v, np.float32(0.9))][i % 4](h)
        b.output(h)
        return b.build()

    feeds = {"x": np.ones(16, np.float32)}
    e1, e200 = NumbaExecutable(chain(1)), NumbaExecutable(chain(200))
    ref200 = reference.run
    g200 = e200.graph
    t = medians({"numba 1": lambda: e1.run(feeds), "numba 200": lambda: e200.run(feeds),
                 "reference 200": lambda: ref200(g200, feeds)}, repeats * 5)
    per_node = (t["numba 200"] - t["numba 1"]) / 199
    table("dispatch overhead, 200-node chain of tiny ops (target < 5 us per node)",
          ["graph", "run us", "us per node"],
          [["numba, 1 node", t["numba 1"] * 1e6, "-"],
           ["numba, 200 nodes", t["numba 200"] * 1e6, per_node * 1e6],
           ["reference, 200 nodes", t["reference 200"] * 1e6, t["reference 200"] / 200 * 1e6]])


def _load(name: str) -> Any | None:
    from .models import list_models, load_model

    if not any(m.name == name and m.available for m in list_models()):
        return None
    return load_model(name)


def bench_arena() -> None:
    """Arena size next to the naive sum of intermediate buffers, per model."""
    rows = []
    for name in MODELS:
        model = _load(name)
        if model is None:
            continue
        st = NumbaExecutable(model.graph).stats
        rows.append([name, st["buffers"], st["naive_bytes"] / 1e6, st["arena_bytes"] / 1e6,
                     st["peak_live_bytes"] / 1e6, st["arena_bytes"] / max(st["naive_bytes"], 1)])
    table("memory arena (MB)", ["model", "buffers", "naive", "arena", "peak live", "arena/naive"], rows)


def _model_row(name: str, repeats: int, threads: int) -> list[Any] | None:
    model = _load(name)
    if model is None:
        print(f"(model {name} not available here)")
        return None
    exe = NumbaExecutable(model.graph)
    fns: dict[str, Callable[[], Any]] = {"numba": lambda: exe.run(model.inputs),
                                         "reference": lambda: reference.run(model.graph, model.inputs)}
    try:
        sess = ort_session(model.graph, threads)
    except Exception as e:  # noqa: BLE001 - a peer that cannot load the model is reported, not fatal
        print(f"(ONNX Runtime cannot run {name}: {type(e).__name__}: {e})")
        sess = None
    if sess is not None:
        names = [i.name for i in sess.get_inputs()]
        fns["ort"] = lambda: sess.run(None, {k: model.inputs[k] for k in names})
    t = medians(fns, max(3, repeats // 2), warmup=1)
    return [name, exe.compile_seconds, exe.stats["jit_seconds"], exe.stats["cache_misses"], t["numba"] * 1e3,
            t["reference"] * 1e3, t["reference"] / t["numba"], t["ort"] * 1e3 if "ort" in t else "-",
            t["numba"] / t["ort"] if "ort" in t else "-"]


def bench_models(repeats: int, threads: int) -> None:
    """Whole models: Numba backend vs the numpy reference backend and ONNX Runtime; compile times apart."""
    rows = [r for r in (_model_row(name, repeats, threads) for name in MODELS) if r is not None]
    table("whole models (ms; speedup = reference/numba; numba/ORT < 1 means faster than ONNX Runtime)",
          ["model", "compile s", "jit s", "jit misses", "numba ms", "reference ms", "speedup", "ORT ms",
           "numba/ORT"], rows)


def main(argv: list[str] | None = None) -> None:
    """Run the selected sections and print their tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    p.add_argument("--repeats", type=positive_int, default=11, help="timed runs per measurement (median)")
    args = p.parse_args(argv)
    threads = numba.get_num_threads()
    sections = split_csv(args.sections)
    reject_unknown(p, "--sections", sections, SECTIONS, "section")
    print(f"threads: numba {threads} ({numba.config.THREADING_LAYER} layer); repeats {args.repeats}; "
          f"numpy {np.__version__}; numba {numba.__version__}")
    if "gemm" in sections:
        bench_gemm(args.repeats, threads)
    if "conv" in sections:
        bench_conv(args.repeats, threads)
    if "dispatch" in sections:
        bench_dispatch(args.repeats)
    if "arena" in sections:
        bench_arena()
    if "models" in sections:
        bench_models(args.repeats, threads)


if __name__ == "__main__":
    main()
