"""Benchmark the block-sparse int8 GEMM against the dense int8 GEMM, our fp32 kernels and numpy on this CPU.

`python -m tensorsmith.bench.sparse_int8_gemm [--threads T] [--repeats R] [--only gemm|minilm]` prints the
int8 paths (the dense int8 GEMM's, and the micro-kernel family the sparse one runs), the int8 break-even
densities the lowering uses, then per shape the time of u8 x s8 -> dequantized f32 products with a 32x32
block-pruned weight over a density sweep and over block sizes at density 0.1: effective GOP/s (dense ops
2*M*N*K / time) and the ratio to the dense int8 GEMM, to the dense fp32 micro-kernel GEMM, to numpy's fp32
product and to the fp32 BSR kernel at the same density, all in this process. Activations are quantized
once outside the timing (as a static-quantized model feeds them). Then all-MiniLM-L6-v2 (batch 1, seq 128):
fp32, int8 dynamic, and its FFN linears block-pruned (32x32) to 50% and 80% with int8 dynamic on top,
end to end, with the kernel each FFN layer got and the cosine to the fp32 embeddings. Medians after warm-up.
`measure_bsr_int8_breakeven` is the measurement `bench calibrate` stores for the int8 choice.
"""

from __future__ import annotations

import argparse
from typing import Any

import numba
import numpy as np

from ..backends.cost.sparse_kernels import BreakEven, block_key, choose_sparse_kernel, load_breakeven
from ..backends.numba.bsr_int8 import SPARSE_PATH, TILES, bsr_int8_from_dense, bsr_int8_schedule, sparse_int8_kernel
from ..backends.numba.cpu_features import best_int8_path
from ..backends.numba.int8_gemm import (
    NO_PARAMS,
    NO_QUANT_OUT,
    NO_STAGES,
    NO_WEIGHT_ZERO_POINT,
    int8_kernels,
    int8_tiles,
    pack_int8_weights,
    quantize_dynamic,
    scratch_size,
)
from ..backends.numba.int8_ukernel import WEIGHT_RANGE
from ..backends.numba.jit import EMPTY_F32, kernel_args
from ..ir.types import SparsityInfo
from .calibrate import blas_median_time, median_time
from .options import check_threads, positive_int
from .sparse_gemm import SHAPES, block_weight, bsr_runner, crossing_line, dense_runner

SWEEP_DENSITIES = (0.7, 0.5, 0.3, 0.2, 0.1, 0.05)
SWEEP_BLOCK = (32, 32)
BLOCK_SIZES = (8, 16, 32, 64)
_NO_REQUANT = (NO_QUANT_OUT, np.zeros(0, np.float32), np.zeros(0, np.int32))


def int8_weight(w: np.ndarray, path: str) -> np.ndarray:
    """A float weight symmetric-quantized per output channel to the s8 range `path` computes exactly (zeros stay
    zero)."""
    hi = WEIGHT_RANGE[path][1]
    amax = np.abs(w).max(axis=1, keepdims=True)
    return np.rint(w / np.where(amax > 0, amax / hi, 1.0)).astype(np.int8)


def int8_dense_runner(xq: np.ndarray, sx: np.ndarray, zp: np.ndarray, w_q: np.ndarray, path: str,
                      threads: int) -> Any:
    """A call of the dense int8 GEMM with dequantization (weights packed once) on `path`."""
    m, n = xq.shape[0], w_q.shape[0]
    packed = pack_int8_weights(w_q, np.ones(n, np.float32), path)
    tm, tnp = int8_tiles(m, n, path, threads, threads > 1)
    scratch = np.empty(scratch_size(m, n, path, tm, tnp), np.int32)
    out, bias = np.empty((m, n), np.float32), np.zeros(n, np.float32)
    kern = int8_kernels(path).gemm_dequant.pick(threads > 1)
    args = kernel_args((xq, sx, zp, packed.data, packed.colsum, NO_WEIGHT_ZERO_POINT, NO_WEIGHT_ZERO_POINT,
                        packed.scales, bias, out, tm, tnp, scratch,
                        NO_STAGES, EMPTY_F32, NO_PARAMS, EMPTY_F32, *_NO_REQUANT), writes=(out, scratch, NO_QUANT_OUT))
    return lambda: kern(*args)


def int8_bsr_runner(xq: np.ndarray, sx: np.ndarray, zp: np.ndarray, w_q: np.ndarray, block: tuple[int, int],
                    path: str, threads: int) -> Any:
    """A call of the block-sparse int8 kernel (packing and schedule done once) on `path`'s family."""
    m, n = xq.shape[0], w_q.shape[0]
    bsr = bsr_int8_from_dense(w_q, block, path)
    sched = bsr_int8_schedule(bsr, m, threads)
    scratch = np.empty(sched.scratch, np.int32)
    out, bias = np.empty((m, n), np.float32), np.zeros(n, np.float32)
    kern = sparse_int8_kernel(path, bsr.tile).driver.pick(threads > 1)
    args = kernel_args((xq, sx, zp, bsr.gidx, bsr.pptr, bsr.data, bsr.colsum, NO_WEIGHT_ZERO_POINT,
                        NO_WEIGHT_ZERO_POINT, bsr.scales, bias, out, sched.groups,
                        sched.tm, scratch, NO_STAGES, EMPTY_F32, NO_PARAMS, EMPTY_F32, *_NO_REQUANT),
                       writes=(out, scratch, NO_QUANT_OUT))
    return lambda: kern(*args)


def measure_bsr_int8_breakeven(m: int, n: int, k: int, block: tuple[int, int],
                               densities: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5), threads: int | None = None,
                               repeats: int = 7, seed: int = 0, path: str | None = None) -> BreakEven | None:
    """Speed-ups of the block-sparse int8 kernel over the dense int8 GEMM (the host's best path) at `densities`;
    None when this host has no int8 path."""
    path = path or best_int8_path()
    if path is None:
        return None
    th = threads or numba.get_num_threads()
    rng = np.random.default_rng(seed)
    xq, sx, zp = quantize_dynamic(rng.standard_normal((m, k), dtype=np.float32))
    t_dense = median_time(int8_dense_runner(xq, sx, zp, int8_weight(rng.standard_normal((n, k)), path), path, th),
                          repeats)
    speedups = tuple(
        t_dense / median_time(int8_bsr_runner(xq, sx, zp, int8_weight(block_weight(rng, n, k, block, d), path),
                                              block, path, th), repeats) for d in densities)
    return BreakEven(tuple(block), (m, n, k), tuple(densities), speedups)


def run(threads: int, repeats: int, shapes: tuple = SHAPES) -> list[dict[str, Any]]:
    """Time the density sweep and the block sizes on every shape; print one table per shape, return the rows."""
    numba.set_num_threads(threads)
    path = best_int8_path()
    if path is None:
        print("this host executes no int8 path: nothing to measure")
        return []
    family = SPARSE_PATH[path]
    print(f"dense int8 GEMM path: {path}; block-sparse int8 micro-kernels: {family} "
          f"(tiles {', '.join(f'{s.mr}x{s.nr}' for s in TILES[family])}); {threads} thread(s), median of {repeats}")
    print("int8 break-even densities the lowering uses: "
          + ", ".join(f"{block_key(b)} {d:.2f}" for b, d in sorted(load_breakeven(precision='int8').items())))
    rows = []
    for si, (m, k, n) in enumerate(shapes):
        rng = np.random.default_rng(si)
        x = rng.standard_normal((m, k), dtype=np.float32)
        xq, sx, zp = quantize_dynamic(x)
        ops = 2 * m * n * k
        w0 = rng.standard_normal((n, k), dtype=np.float32)
        wt = np.ascontiguousarray(w0.T)
        t_np = blas_median_time(lambda x=x, wt=wt: x @ wt, repeats)
        t_f32 = median_time(dense_runner(x, w0, threads), repeats)
        t_i8 = median_time(int8_dense_runner(xq, sx, zp, int8_weight(w0, path), path, threads), repeats)
        print(f"\n{m}x{k}x{n} (MxKxN): numpy fp32 {ops / t_np / 1e9:.0f} GFLOP/s ({t_np * 1e3:.3f} ms), Numba fp32 "
              f"{ops / t_f32 / 1e9:.0f} ({t_f32 * 1e3:.3f} ms), dense int8 {ops / t_i8 / 1e9:.0f} GOP/s "
              f"({t_i8 * 1e3:.3f} ms)")
        print(f"{'kernel':>16} {'density':>8} {'ms':>8} {'eff GOP/s':>10} {'x int8':>7} {'x fp32':>7} {'x numpy':>8} "
              f"{'x fp32 bsr':>10}  lowering")
        sweep = [(SWEEP_BLOCK, d) for d in SWEEP_DENSITIES]
        sweep += [((b, b), 0.1) for b in BLOCK_SIZES if (b, b) != SWEEP_BLOCK]
        for block, d in sweep:
            w = block_weight(np.random.default_rng(1000 * si + 10 * block[0] + int(d * 100)), n, k, block, d)
            t = median_time(int8_bsr_runner(xq, sx, zp, int8_weight(w, path), block, path, threads), repeats)
            t_bsr = median_time(bsr_runner(x, w, block, threads), repeats)
            choice = choose_sparse_kernel(SparsityInfo("block", d, block=block), precision="int8")
            rows.append({"shape": (m, k, n), "kernel": f"bsr {block_key(block)} int8", "density": d, "seconds": t,
                         "vs_int8": t_i8 / t, "vs_fp32": t_f32 / t, "vs_numpy": t_np / t, "vs_fp32_bsr": t_bsr / t,
                         "lowering": choice.label})
            print(f"{'bsr ' + block_key(block) + ' int8':>16} {d:>8.2f} {t * 1e3:>8.3f} {ops / t / 1e9:>10.0f} "
                  f"{t_i8 / t:>7.2f} {t_f32 / t:>7.2f} {t_np / t:>8.2f} {t_bsr / t:>10.2f}  {choice.label}")
        print(crossing_line(rows, (m, k, n), f"bsr {block_key(SWEEP_BLOCK)} int8", "vs_int8", "the dense int8 GEMM"))
    return rows


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def minilm(threads: int, repeats: int, sparsities: tuple[float, ...] = (0.5, 0.8)) -> list[dict[str, Any]]:
    """all-MiniLM-L6-v2 at batch 1, seq 128: fp32, int8 dynamic, and FFN block-pruned + int8 dynamic, end to end."""
    from ..passes.pipeline import run_pipeline
    from ..runtime import compile as compile_graph
    from .models.minilm import minilm_graph
    from .sparse_gemm import FFN_SKIP

    numba.set_num_threads(threads)
    graph = minilm_graph(1, 128)
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(0, 1000, (1, 128)), "attention_mask": np.ones((1, 128), np.float32)}
    configs = [("fp32", None, ""), ("int8 dynamic", None, "quantize{scheme=dynamic}")]
    configs += [(f"FFN 32x32 pruned {sp:.0%} + int8", sp, f"prune{{pattern=block,block=32x32,sparsity={sp},ops=linear,"
                 f"skip={FFN_SKIP}}},quantize{{scheme=dynamic}}") for sp in sparsities]
    print(f"\nall-MiniLM-L6-v2, batch 1, seq 128, {threads} thread(s), int8 path {best_int8_path()}, median of "
          f"{repeats}")
    base_out, base_t, out = None, None, []
    for label, sp, pipeline in configs:
        g = run_pipeline(graph, pipeline) if pipeline else graph
        exe = compile_graph(g, backend="numba")
        t = exe.median_seconds(feeds, repeats)
        res = next(iter(exe.run(feeds).values()))
        base_out = res if base_out is None else base_out
        base_t = t if base_t is None else base_t
        kinds = [v["kernel"] for name, v in exe.stats.get("kernels_by_layer", {}).items() if ".ffn_" in name]
        note = ("; FFN kernels: " + ", ".join(f"{kinds.count(kd)} {kd}" for kd in sorted(set(kinds)))) if kinds else ""
        cos = _cosine(res, base_out)
        print(f"  {label:<28} {t * 1e3:7.2f} ms  {base_t / t:5.2f}x fp32  cosine {cos:.4f}{note}")
        out.append({"model": "minilm", "config": label, "sparsity": sp or 0.0, "seconds": t, "cosine": cos,
                    "kernels": kinds})
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: run the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=positive_int, default=numba.config.NUMBA_NUM_THREADS)
    p.add_argument("--repeats", type=positive_int, default=7)
    p.add_argument("--only", choices=("gemm", "minilm"), default=None, help="run one part only")
    args = p.parse_args(argv)
    check_threads(p, "--threads", [args.threads])
    if args.only != "minilm":
        run(args.threads, args.repeats)
    if args.only != "gemm":
        minilm(args.threads, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
