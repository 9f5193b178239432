"""Benchmark of the int8 GEMM per path against the fp32 GEMMs and ONNX Runtime's dynamic int8 MatMul.

    python -m tensorsmith.bench.int8_gemm                    # every path this host executes
    python -m tensorsmith.bench.int8_gemm --repeats 21 --paths avx2

`<path> graph` is f32 in, f32 out, as ONNX Runtime's DynamicQuantizeLinear + MatMulInteger graph:
a linear quantized by `quantize{scheme=dynamic,fold=false},quantize-fold{dynamic=true,granularity=tensor}`
(int8 weights per output channel, the activations quantized at run time per tensor), compiled for that
path and timed through `run` (input check and output allocation included, as ONNX Runtime's `run`);
`<path> graph row` the same with one scale per activation row (what `quantize{scheme=dynamic}` writes);
`<path> gemm` is the GEMM with dequantization alone on already quantized activations, called through
its compiled entry point as a compiled graph calls it. GOP/s = 2*M*N*K / median time. The
fp32 Numba micro-kernel GEMM runs in this process. The peers run in processes of their own, their
spinning threads kept away from Numba's: numpy's fp32 product (its OpenBLAS workers spin for about
0.1 s after each product, and the Numba runtime, seeing a CPU taken, halves its threads), ONNX
Runtime once before and once after the rest, so that a change of machine load between the two
shows, and PyTorch's dynamically quantized Linear (when torch is installed).
Weights are packed before timing, as at compile time. `weights read-bound` is what a product that only read its
int8 weights would reach (`read_bound.py`: a parallel read of K x N bytes on this host): at M = 1-16 every int8
product, ours and the peers', is bound by it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from typing import Any

import numba
import numpy as np

from .. import runtime
from ..backends.numba import int8_gemm as ig
from ..backends.numba.cpu_features import INT8_PATH_FEATURES, amx_reported, int8_paths, unavailable_int8_paths
from ..backends.numba.int8_gemm import NO_PARAMS
from ..backends.numba.int8_ukernel import WEIGHT_RANGE
from ..backends.numba.jit import EMPTY_F32
from ..backends.numba.k_gemm_packed import NO_REGISTER_EPILOGUE, gemm_packed, pack_weights, scratch_per_tile
from ..backends.numba.k_microkernel import AVAILABLE
from ..backends.numba.rules_dense import packed_tiles
from ..ir import GraphBuilder, f32
from ..passes import run_pipeline
from ..runtime.numba_exec import compiled_entry
from .kernels import has, medians, table
from .options import check_int8_paths, check_threads, positive_int, split_csv
from .read_bound import read_bound_gops

SHAPES = ((1024, 1024, 1024), (128, 768, 768), (128, 768, 3072), (128, 3072, 768), (1, 4096, 4096),
          (4, 4096, 4096), (16, 4096, 4096))
"""(M, K, N) of the benchmark."""


def _gops(m: int, k: int, n: int, seconds: float) -> float:
    return 2.0 * m * n * k / seconds / 1e9


def ort_child(shapes: list[tuple[int, int, int]], threads: int, repeats: int) -> None:
    """In a child process: ONNX Runtime's quantize_dynamic MatMul per shape, GOP/s as JSON on stdout."""
    import tempfile

    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        for m, k, n in shapes:
            w = rng.standard_normal((k, n), dtype=np.float32)
            g = helper.make_graph([helper.make_node("MatMul", ["A", "W"], ["Y"])], "mm",
                                  [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
                                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])],
                                  [numpy_helper.from_array(w, "W")])
            model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
            model.ir_version = 9
            f32, q8 = os.path.join(d, "f32.onnx"), os.path.join(d, "q8.onnx")
            onnx.save(model, f32)
            quantize_dynamic(f32, q8, weight_type=QuantType.QInt8)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            opts.log_severity_level = 3
            sess = ort.InferenceSession(q8, opts, providers=["CPUExecutionProvider"])
            x = rng.standard_normal((m, k), dtype=np.float32)
            t = medians({"ort": lambda s=sess, a=x: s.run(None, {"A": a})}, repeats)["ort"]
            out[f"{m}x{k}x{n}"] = _gops(m, k, n, t)
    print(json.dumps(out))


def numpy_child(shapes: list[tuple[int, int, int]], threads: int, repeats: int) -> None:
    """In a child process: numpy's fp32 product (its bundled OpenBLAS) per shape, GFLOP/s as JSON on stdout."""
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for m, k, n in shapes:
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((n, k), dtype=np.float32)
        out[f"{m}x{k}x{n}"] = _gops(m, k, n, medians({"numpy": lambda a=x, b=w: a @ b.T}, repeats)["numpy"])
    print(json.dumps(out))


def torch_child(shapes: list[tuple[int, int, int]], threads: int, repeats: int) -> None:
    """In a child process: PyTorch's dynamically quantized Linear (int8 weights, f32 in and out) per shape."""
    import warnings

    import torch

    warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"engine": torch.backends.quantized.engine}
    for m, k, n in shapes:
        lin = torch.nn.Linear(k, n, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(rng.standard_normal((n, k), dtype=np.float32)))
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
        x = torch.from_numpy(rng.standard_normal((m, k), dtype=np.float32))
        with torch.inference_mode():
            t = medians({"torch": lambda mod=q, a=x: mod(a)}, repeats)["torch"]
        out[f"{m}x{k}x{n}"] = _gops(m, k, n, t)
    print(json.dumps(out))


def peer_figures(peer: str, shapes: tuple[tuple[int, int, int], ...], threads: int, repeats: int) -> dict[str, Any]:
    """GOP/s of a peer's product per shape ("ort" or "torch": dynamic int8; "numpy": fp32), measured in a child
    process, whose threads then cannot spin against ours (empty when the peer is not installed)."""
    if not all(has(mod) for mod in ({"ort": ("onnxruntime", "onnx"), "torch": ("torch",), "numpy": ()}[peer])):
        return {}
    arg = json.dumps([list(s) for s in shapes])
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads)) if peer == "numpy" else None
    r = subprocess.run([sys.executable, "-m", "tensorsmith.bench.int8_gemm", f"--{peer}-child", arg,
                        "--threads", str(threads), "--repeats", str(repeats)], capture_output=True, text=True,
                       env=env)
    if r.returncode:
        print(f"{peer} child failed: {r.stderr[-1000:]}")
        return {}
    return json.loads(r.stdout.strip().splitlines()[-1])


def quantized_linear(w: np.ndarray, m: int, path: str, granularity: str) -> Any:
    """y = x @ w.T for x f32 [m, K] as a user compiles it: int8 weights per output channel, activations quantized
    at run time per `granularity` ("tensor", as ONNX Runtime's DynamicQuantizeLinear, or "row"), on the Numba
    backend's int8 `path`; returns the executable (its `run` is f32 in, f32 out)."""
    b = GraphBuilder("int8_linear")
    x = b.input("x", f32[m, w.shape[1]])
    b.output(b.linear(x, b.const(w, "w"), name="fc"))
    q = run_pipeline(b.build(), "quantize{scheme=dynamic,fold=false,min_kn=0},"
                                f"quantize-fold{{dynamic=true,granularity={granularity}}}")
    exe = runtime.compile(q, backend="numba", int8_path=path)
    if not any(s.op == "qlinear" for s in exe.plan.steps):
        raise RuntimeError(f"int8 linear {m}x{w.shape[1]}x{w.shape[0]} on {path}: no qlinear kernel in the plan")
    return exe


def bench_shape(m: int, k: int, n: int, paths: list[str], repeats: int, threads: int) -> dict[str, float]:
    """Median seconds of every implementation on one shape (all in this process). Kernels are called through
    their compiled entry points, as a compiled graph calls them (no per-call type resolution)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    fns: dict[str, Any] = {}
    if AVAILABLE:
        bp = pack_weights(w)
        tm, tnp = packed_tiles(m, bp.shape[0], threads, True)
        scratch = np.empty(-(-m // tm) * -(-bp.shape[0] // tnp) * scratch_per_tile(tm), np.float32)
        y = np.empty((m, n), np.float32)
        fns["numba fp32"] = _entry(gemm_packed.parallel, x, bp, y, tm, tnp, scratch, np.zeros(0, np.int64),
                                   EMPTY_F32, NO_PARAMS, EMPTY_F32, *NO_REGISTER_EPILOGUE)
    for path in paths:
        lo, hi = WEIGHT_RANGE[path]
        sw = np.abs(w).max(axis=1) / hi
        packed = ig.pack_int8_weights(np.clip(np.rint(w / sw[:, None]), lo, hi).astype(np.int8), sw, path)
        for gran, label in (("tensor", "graph"), ("row", "graph row")):
            fns[f"{path} {label}"] = functools.partial(quantized_linear(w, m, path, gran).run, {"x": x})
        xq, sx, zp = ig.quantize_dynamic(x, per_row=False, parallel=True)
        tm, tnp = ig.int8_tiles(m, n, path, threads, True)
        out = np.empty((m, n), np.float32)
        q, s_out, zp_out = ig.requant_operands(None, m, n)
        fns[f"{path} gemm"] = _entry(ig.int8_kernels(path).gemm_dequant.parallel, xq, sx, zp, packed.data,
                                     packed.colsum, ig.NO_WEIGHT_ZERO_POINT, ig.NO_WEIGHT_ZERO_POINT,
                                     packed.scales, np.zeros(n, np.float32), out, tm, tnp,
                                     np.empty(ig.scratch_size(m, n, path, tm, tnp), np.int32), ig.NO_STAGES,
                                     EMPTY_F32, NO_PARAMS, EMPTY_F32, q, s_out, zp_out)
    for f in fns.values():  # JIT compile time stays out of the timings
        f()
    return medians(fns, repeats)


def _entry(kernel: Any, *args: Any) -> Any:
    """A call of `kernel` on `args` through its compiled entry point for their types."""
    return functools.partial(compiled_entry(kernel, args), *args)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print GOP/s per implementation and shape."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=positive_int, default=11)
    ap.add_argument("--threads", type=positive_int, default=numba.get_num_threads())
    ap.add_argument("--paths", default=",".join(int8_paths()),
                    help=f"int8 paths, comma separated (default: those this host executes; known: "
                         f"{', '.join(INT8_PATH_FEATURES)})")
    ap.add_argument("--ort-child", help=argparse.SUPPRESS)
    ap.add_argument("--torch-child", help=argparse.SUPPRESS)
    ap.add_argument("--numpy-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    check_threads(ap, "--threads", [args.threads])
    paths = split_csv(args.paths)
    check_int8_paths(ap, "--paths", paths)
    for child, fn in ((args.ort_child, ort_child), (args.torch_child, torch_child), (args.numpy_child, numpy_child)):
        if child:
            fn([tuple(s) for s in json.loads(child)], args.threads, args.repeats)
            return
    numba.set_num_threads(args.threads)
    for p in paths:
        ig.int8_kernels(p)  # refuses a path this host lacks before anything is timed
    why_not = "; ".join(f"{p}: {why}" for p, why in unavailable_int8_paths().items()) or "none"
    print(f"int8 paths this host executes: {', '.join(int8_paths())} (best first); timed: {', '.join(paths)}; "
          f"AMX reported: {amx_reported()}; paths it cannot run: {why_not}; threads: {args.threads}")
    numpy_figs = peer_figures("numpy", SHAPES, args.threads, args.repeats)
    ort_before = peer_figures("ort", SHAPES, args.threads, args.repeats)
    torch_figs = peer_figures("torch", SHAPES, args.threads, args.repeats)
    rows = []
    names: list[str] = []
    for m, k, n in SHAPES:
        t = bench_shape(m, k, n, paths, args.repeats, args.threads)
        names = names or list(t)
        rows.append([f"{m}x{k}x{n}", numpy_figs.get(f"{m}x{k}x{n}", float("nan"))]
                    + [_gops(m, k, n, t[c]) for c in names] + [read_bound_gops(m, k, n, args.repeats)])
    ort_after = peer_figures("ort", SHAPES, args.threads, args.repeats)
    for row, (m, k, n) in zip(rows, SHAPES):
        row += [peer.get(f"{m}x{k}x{n}", float("nan")) for peer in (ort_before, ort_after, torch_figs)]
    engine = torch_figs.get("engine", "not installed")
    table(f"GOP/s (GFLOP/s for fp32), M x K x N, median of --repeats; ONNX Runtime before and after the others; "
          f"PyTorch dynamic quantized Linear (engine {engine})",
          ["shape", "numpy fp32"] + names + ["weights read-bound", "ORT int8 before", "ORT int8 after", "torch int8"],
          rows)


if __name__ == "__main__":
    main()
