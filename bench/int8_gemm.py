"""Benchmark of the int8 GEMM per path against the fp32 GEMMs and ONNX Runtime's dynamic int8 MatMul.

    python -m tensorsmith.bench.int8_gemm                    # every path this host executes
    python -m tensorsmith.bench.int8_gemm --repeats 21 --paths avx2

Each int8 figure is f32 in, f32 out, as ONNX Runtime's DynamicQuantizeLinear + MatMulInteger
graph: per-tensor dynamic quantization of the activations, then the GEMM with dequantization
(`int8 total`); `int8 row total` the same with one scale per activation row (what
`quantize{scheme=dynamic}` writes: one pass per row, one parallel region); `int8 gemm` is the GEMM
with dequantization alone on already quantized activations. GOP/s = 2*M*N*K / median time. The
fp32 Numba micro-kernel GEMM and numpy run in this process; ONNX Runtime runs in its own process
(its spinning threads would slow Numba's), once before and once after them, so that a change of
machine load between the two shows; PyTorch's dynamically quantized Linear (when torch is installed)
runs in a process of its own too.
Weights are packed before timing, as at compile time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import numba
import numpy as np

from ..backends.numba import int8_gemm as ig
from ..backends.numba.cpu_features import amx_reported, int8_paths, unavailable_int8_paths
from ..backends.numba.int8_gemm import NO_PARAMS
from ..backends.numba.int8_ukernel import WEIGHT_RANGE
from ..backends.numba.jit import EMPTY_F32
from ..backends.numba.k_gemm_packed import gemm_packed, pack_weights, scratch_per_tile
from ..backends.numba.k_microkernel import AVAILABLE
from ..backends.numba.rules_dense import packed_tiles
from .kernels import has, medians, table

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
    """GOP/s of a peer's dynamic int8 product per shape ("ort" or "torch"), measured in a child process
    (empty when the peer is not installed)."""
    if not all(has(mod) for mod in ({"ort": ("onnxruntime", "onnx"), "torch": ("torch",)}[peer])):
        return {}
    arg = json.dumps([list(s) for s in shapes])
    r = subprocess.run([sys.executable, "-m", "tensorsmith.bench.int8_gemm", f"--{peer}-child", arg,
                        "--threads", str(threads), "--repeats", str(repeats)], capture_output=True, text=True)
    if r.returncode:
        print(f"{peer} child failed: {r.stderr[-1000:]}")
        return {}
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_shape(m: int, k: int, n: int, paths: list[str], repeats: int, threads: int) -> dict[str, float]:
    """Median seconds of every implementation on one shape (all in this process)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    fns: dict[str, Any] = {"numpy fp32": lambda: x @ w.T}
    if AVAILABLE:
        bp = pack_weights(w)
        tm, tnp = packed_tiles(m, bp.shape[0], threads, True)
        scratch = np.empty(-(-m // tm) * -(-bp.shape[0] // tnp) * scratch_per_tile(tm), np.float32)
        y = np.empty((m, n), np.float32)
        stages = np.zeros(0, np.int64)
        fns["numba fp32"] = lambda: gemm_packed.parallel(x, bp, y, tm, tnp, scratch, stages, EMPTY_F32, NO_PARAMS,
                                                               EMPTY_F32)
    for path in paths:
        lo, hi = WEIGHT_RANGE[path]
        sw = np.abs(w).max(axis=1) / hi
        packed = ig.pack_int8_weights(np.clip(np.rint(w / sw[:, None]), lo, hi).astype(np.int8), sw, path)
        xq, sx, zp = ig.quantize_dynamic(x, per_row=False, parallel=True)
        fns[f"{path} total"] = (lambda p=packed, pa=path: ig.int8_gemm_dequant(
            *ig.quantize_dynamic(x, per_row=False, parallel=True), p, pa, parallel=True))
        fns[f"{path} row total"] = (lambda p=packed, pa=path: ig.int8_gemm_dequant(
            *ig.quantize_dynamic(x, per_row=True, parallel=True), p, pa, parallel=True))
        fns[f"{path} gemm"] = (lambda p=packed, pa=path, a=(xq, sx, zp): ig.int8_gemm_dequant(
            *a, p, pa, parallel=True))
    for f in fns.values():  # JIT compile time stays out of the timings
        f()
    return medians(fns, repeats)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print GOP/s per implementation and shape."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--threads", type=int, default=numba.get_num_threads())
    ap.add_argument("--paths", default=",".join(int8_paths()), help="int8 paths, comma separated")
    ap.add_argument("--ort-child", help=argparse.SUPPRESS)
    ap.add_argument("--torch-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for child, fn in ((args.ort_child, ort_child), (args.torch_child, torch_child)):
        if child:
            fn([tuple(s) for s in json.loads(child)], args.threads, args.repeats)
            return
    numba.set_num_threads(args.threads)
    paths = [p for p in args.paths.split(",") if p]
    for p in paths:
        ig.int8_kernels(p)  # refuses a path this host lacks before anything is timed
    why_not = "; ".join(f"{p}: {why}" for p, why in unavailable_int8_paths().items()) or "none"
    print(f"int8 paths this host executes: {', '.join(int8_paths())} (best first); timed: {', '.join(paths)}; "
          f"AMX reported: {amx_reported()}; paths it cannot run: {why_not}; threads: {args.threads}")
    ort_before = peer_figures("ort", SHAPES, args.threads, args.repeats)
    torch_figs = peer_figures("torch", SHAPES, args.threads, args.repeats)
    rows = []
    names: list[str] = []
    for m, k, n in SHAPES:
        t = bench_shape(m, k, n, paths, args.repeats, args.threads)
        names = names or list(t)
        rows.append([f"{m}x{k}x{n}"] + [_gops(m, k, n, t[c]) for c in names])
    ort_after = peer_figures("ort", SHAPES, args.threads, args.repeats)
    for row, (m, k, n) in zip(rows, SHAPES):
        row += [peer.get(f"{m}x{k}x{n}", float("nan")) for peer in (ort_before, ort_after, torch_figs)]
    engine = torch_figs.get("engine", "not installed")
    table(f"GOP/s (GFLOP/s for fp32), M x K x N, median of --repeats; ONNX Runtime before and after the others; "
          f"PyTorch dynamic quantized Linear (engine {engine})",
          ["shape"] + names + ["ORT int8 before", "ORT int8 after", "torch int8"], rows)


if __name__ == "__main__":
    main()
