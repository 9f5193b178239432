"""Benchmark the block-sparse (BSR) and N:M fp32 GEMM kernels against dense GEMMs on this CPU.

`python -m tensorsmith.bench.sparse_gemm [--threads T] [--repeats R] [--isa avx2] [--no-torch] [--only gemm|minilm]`
prints the break-even densities the lowering uses and the kernel paths, then effective GFLOP/s
(dense-equivalent flops 2*M*N*K / time) of the BSR kernel over a density sweep (32x32 blocks) and
over block sizes 8..64 at density 0.1, and of the N:M kernel at 2:4, 4:8 and 1:4, next to the dense
Numba micro-kernel GEMM, numpy and scipy.sparse BSR in the same process, PyTorch's `to_sparse_bsr`
product in its own subprocess when torch is installed, and which kernel the lowering picks; then
all-MiniLM-L6-v2 (batch 1, seq 128) dense against its FFN linears block-pruned to 50% and 80%,
with the cost model's predicted speed-up per layer next to the measured one. Medians after warm-up;
the ratio to the dense Numba GEMM is the figure to compare across runs.
`measure_bsr_breakeven` is the measurement `bench calibrate` stores for the BSR / dense choice.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

import numba
import numpy as np
import scipy.sparse

from ..backends.cost.sparse_kernels import (
    BreakEven,
    block_key,
    breakeven_density,
    choose_sparse_kernel,
    load_breakeven,
    load_nm_speedups,
)
from ..backends.numba import k_microkernel
from ..backends.numba.bsr_gemm import bsr_from_dense, bsr_gemm, bsr_schedule
from ..backends.numba.jit import kernel_args
from ..backends.numba.k_gemm_packed import NO_REGISTER_EPILOGUE, gemm_packed, pack_weights, scratch_per_tile
from ..backends.numba.nm_gemm import nm_from_dense, nm_gemm, nm_schedule
from ..backends.numba.rules_dense import packed_tiles
from ..backends.numba.sparse_ukernels import HOST_ISA, HOST_ISAS, Isa, resolve_isa
from ..ir.types import SparsityInfo
from .calibrate import blas_median_time, median_time
from .options import check_threads, positive_int, reject_unknown

SHAPES = ((1024, 1024, 1024), (128, 768, 3072), (128, 3072, 768))
"""(M, K, N): a square product and the two FFN products of a BERT-base layer at 128 tokens."""
SWEEP_DENSITIES = (0.7, 0.5, 0.3, 0.2, 0.1, 0.05)
SWEEP_BLOCK = (32, 32)
BLOCK_SIZES = (8, 16, 32, 64)
"""Square block sides timed at density 0.1."""
NM_PATTERNS = ((2, 4), (4, 8), (1, 4))
_NO_STAGES = np.zeros(0, np.int64)
_NO_PARAMS = np.zeros((1, 2), np.float32)
_NO_RES = np.zeros((1, 1), np.float32)

_TORCH_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
out = {}
for key, (m, k, n, bh, bw, d, seed) in cfg["cases"].items():
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((m, k), dtype=np.float32))
    mask = rng.random((-(-n // bh), -(-k // bw))) < d
    w = rng.standard_normal((n, k), dtype=np.float32) * np.kron(mask, np.ones((bh, bw), np.float32))[:n, :k]
    wb = torch.from_numpy(w).to_sparse_bsr((bh, bw))
    xt = x.t().contiguous()
    f = lambda: wb @ xt
    for _ in range(2): f()
    ts = []
    for _ in range(cfg["repeats"]):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    out[key] = float(np.median(ts))
print(json.dumps(out))
"""


def block_weight(rng: np.random.Generator, n: int, k: int, block: tuple[int, int], density: float) -> np.ndarray:
    """W [n, k] with random bh x bw blocks kept with probability `density` (what block pruning leaves)."""
    bh, bw = block
    mask = rng.random((-(-n // bh), -(-k // bw))) < density
    w = rng.standard_normal((n, k), dtype=np.float32)
    return w * np.kron(mask, np.ones((bh, bw), np.float32))[:n, :k]


def dense_runner(x: np.ndarray, w: np.ndarray, threads: int) -> Any:
    """A call of the dense micro-kernel GEMM (weights packed once) computing x @ w.T."""
    m, n = x.shape[0], w.shape[0]
    bp = pack_weights(np.ascontiguousarray(w, np.float32))
    tm, tnp = packed_tiles(m, bp.shape[0], threads, threads > 1)
    scratch = np.empty(-(-m // tm) * -(-bp.shape[0] // tnp) * scratch_per_tile(tm), np.float32)
    out = np.empty((m, n), np.float32)
    vecs = np.zeros((1, n), np.float32)
    kern = gemm_packed.pick(threads > 1)
    args = kernel_args((x, bp, out, tm, tnp, scratch, _NO_STAGES, vecs, _NO_PARAMS, _NO_RES, *NO_REGISTER_EPILOGUE),
                       writes=(out, scratch))
    return lambda: kern(*args)


def bsr_runner(x: np.ndarray, w: np.ndarray, block: tuple[int, int], threads: int, isa: str | None = None) -> Any:
    """A call of the BSR kernel (conversion and schedule done once) computing x @ w.T."""
    b = bsr_from_dense(w, block, isa=isa)
    s = bsr_schedule(b, x.shape[0], threads)
    scratch = np.empty(max(1, s.scratch_floats), np.float32)
    out = np.empty((x.shape[0], w.shape[0]), np.float32)
    vecs = np.zeros((1, w.shape[0]), np.float32)
    c, kern = b.config, bsr_gemm.pick(threads > 1)
    args = kernel_args((x, c.code, c.mr, c.np_, b.pptr, b.kidx, b.vals, s.groups, out, s.tm, scratch, _NO_STAGES,
                        vecs, _NO_PARAMS, _NO_RES), writes=(out, scratch))
    return lambda: kern(*args)


def nm_runner(x: np.ndarray, w: np.ndarray, n: int, m: int, threads: int, isa: str | None = None) -> Any:
    """A call of the N:M kernel computing x @ w.T."""
    nm = nm_from_dense(w, n, m, isa=isa)
    s = nm_schedule(nm, x.shape[0], threads)
    scratch = np.empty(max(1, s.scratch_floats), np.float32)
    out = np.empty((x.shape[0], w.shape[0]), np.float32)
    vecs = np.zeros((1, w.shape[0]), np.float32)
    c, kern = nm.config, nm_gemm.pick(threads > 1)
    args = kernel_args((x, c.code, c.r, c.mv, nm.pidx, nm.pvals, s.groups, out, s.tm, scratch, _NO_STAGES, vecs,
                        _NO_PARAMS, _NO_RES), writes=(out, scratch))
    return lambda: kern(*args)


def measure_bsr_breakeven(m: int, n: int, k: int, block: tuple[int, int],
                          densities: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7), threads: int | None = None,
                          repeats: int = 7, seed: int = 0) -> BreakEven:
    """Speed-ups of the BSR kernel over the dense micro-kernel GEMM for x [m, k] @ W^T, W [n, k], at `densities`."""
    th = threads or numba.get_num_threads()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k), dtype=np.float32)
    t_dense = median_time(dense_runner(x, rng.standard_normal((n, k), dtype=np.float32), th), repeats)
    speedups = tuple(t_dense / median_time(bsr_runner(x, block_weight(rng, n, k, block, d), block, th), repeats)
                     for d in densities)
    return BreakEven(tuple(block), (m, n, k), tuple(densities), speedups)


def measure_nm_speedup(m: int, n: int, k: int, pattern: tuple[int, int], threads: int | None = None,
                       repeats: int = 7, seed: int = 0) -> float:
    """Dense micro-kernel time / N:M kernel time for x [m, k] @ W^T, W [n, k] pruned to `pattern`."""
    th = threads or numba.get_num_threads()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k), dtype=np.float32)
    pn, pm = pattern
    g = rng.standard_normal((n, k // pm, pm), dtype=np.float32)
    keep = np.argsort(-np.abs(g), axis=2)[:, :, :pn]
    mask = np.zeros(g.shape, bool)
    np.put_along_axis(mask, keep, True, axis=2)
    w = (g * mask).reshape(n, k)
    return median_time(dense_runner(x, w, th), repeats) / median_time(nm_runner(x, w, pn, pm, th), repeats)


def _torch_times(cases: dict[str, tuple], threads: int, repeats: int) -> dict[str, float] | None:
    """Medians of PyTorch's BSR product per case, measured in a subprocess; None without torch."""
    cfg = json.dumps({"cases": cases, "threads": threads, "repeats": repeats})
    try:
        r = subprocess.run([sys.executable, "-c", _TORCH_SCRIPT, cfg], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0:
        print(f"PyTorch BSR skipped: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def _scipy_runner(x: np.ndarray, w: np.ndarray, block: tuple[int, int]) -> Any:
    """scipy.sparse BSR product W @ x^T (the transposed result, as PyTorch's is timed)."""
    wb = scipy.sparse.bsr_matrix(w, blocksize=block)
    xt = np.ascontiguousarray(x.T)
    return lambda: wb @ xt


def crossing_line(rows: list[dict[str, Any]], shape: tuple[int, int, int], kernel: str, key: str,
                  against: str) -> str:
    """The break-even density measured by this shape's sweep of `kernel` (speed-up column `key`), as a line."""
    pts = sorted((r["density"], r[key]) for r in rows if r["shape"] == shape and r["kernel"] == kernel)
    be = breakeven_density(tuple(d for d, _ in pts), tuple(v for _, v in pts))
    if pts and be >= pts[-1][0] and pts[-1][1] >= 1.0:
        return f"{'':>16} measured break-even of {kernel} against {against}: above {pts[-1][0]:.2f} " \
               f"({pts[-1][1]:.2f}x there)"
    return f"{'':>16} measured break-even of {kernel} against {against}: {be:.2f}"


def _row(name: str, d: float, t: float, flops: int, t_dense: float) -> str:
    return f"{name:>16} {d:>8.2f} {t * 1e3:>9.3f} {flops / t / 1e9:>12.1f} {t_dense / t:>14.2f}"


def run(threads: int, repeats: int, isa: str | None, torch: bool, shapes: tuple = SHAPES) -> list[dict[str, Any]]:
    """Time the density sweep, the block sizes and the N:M patterns on every shape; print tables, return the rows."""
    numba.set_num_threads(threads)
    path = resolve_isa(isa)
    uk = k_microkernel
    print(f"dense micro-kernel path: {'AVX-512' if uk.VW == 16 else 'AVX2'} ({uk.MR}x{uk.NR}); "
          f"sparse kernel path: {path.name} (host best {HOST_ISA.name if HOST_ISA else 'none'}); "
          f"{threads} thread(s), median of {repeats}")
    be = load_breakeven()
    print("break-even densities the lowering uses: "
          + ", ".join(f"{block_key(b)} {d:.2f}" for b, d in sorted(be.items())) + "; N:M speed-ups: "
          + ", ".join(f"{n}:{m} {v:.2f}" for (n, m), v in sorted(load_nm_speedups().items())))
    rows, cases = [], {}
    for si, (m, k, n) in enumerate(shapes):
        rng = np.random.default_rng(si)
        x = rng.standard_normal((m, k), dtype=np.float32)
        flops = 2 * m * n * k
        w0 = rng.standard_normal((n, k), dtype=np.float32)
        wt = np.ascontiguousarray(w0.T)
        t_np = blas_median_time(lambda x=x, wt=wt: x @ wt, repeats)
        t_dense = median_time(dense_runner(x, w0, threads), repeats)
        rows.append({"shape": (m, k, n), "kernel": "dense", "density": 1.0, "seconds": t_dense, "vs_dense": 1.0})
        print(f"\n{m}x{k}x{n} (MxKxN): numpy {flops / t_np / 1e9:.1f} GFLOP/s ({t_np * 1e3:.3f} ms), dense Numba "
              f"micro-kernel {flops / t_dense / 1e9:.1f} GFLOP/s ({t_dense * 1e3:.3f} ms); effective GFLOP/s = dense "
              f"flops / time")
        print(f"{'kernel':>16} {'density':>8} {'ms':>9} {'eff GFLOP/s':>12} {'x dense Numba':>14}")
        sweep = [(SWEEP_BLOCK, d) for d in SWEEP_DENSITIES]
        sweep += [((b, b), 0.1) for b in BLOCK_SIZES if (b, b) != SWEEP_BLOCK]
        for block, d in sweep:
            seed = 1000 * si + 10 * block[0] + int(d * 100)
            w = block_weight(np.random.default_rng(seed), n, k, block, d)
            t = median_time(bsr_runner(x, w, block, threads, isa), repeats)
            t_sp = median_time(_scipy_runner(x, w, block), repeats)
            choice = choose_sparse_kernel(SparsityInfo("block", d, block=block))
            rows.append({"shape": (m, k, n), "kernel": f"bsr {block_key(block)}", "density": d, "seconds": t,
                         "vs_dense": t_dense / t, "scipy_seconds": t_sp, "lowering": choice.label})
            cases[f"{si}/{block[0]}/{d}"] = (m, k, n, block[0], block[1], d, seed)
            print(_row(f"bsr {block_key(block)}", d, t, flops, t_dense) + f"   scipy bsr {t_sp * 1e3:8.3f} ms "
                  f"({t_dense / t_sp:5.2f}x)   lowering picks {choice.label}")
        print(crossing_line(rows, (m, k, n), "bsr " + block_key(SWEEP_BLOCK), "vs_dense", "our dense GEMM"))
        for pn, pm in NM_PATTERNS:
            g = rng.standard_normal((n, k // pm, pm), dtype=np.float32)
            keep = np.argsort(-np.abs(g), axis=2)[:, :, :pn]
            mask = np.zeros(g.shape, bool)
            np.put_along_axis(mask, keep, True, axis=2)
            t = median_time(nm_runner(x, (g * mask).reshape(n, k), pn, pm, threads, isa), repeats)
            choice = choose_sparse_kernel(SparsityInfo("nm", pn / pm, n=pn, m=pm))
            rows.append({"shape": (m, k, n), "kernel": f"nm {pn}:{pm}", "density": pn / pm, "seconds": t,
                         "vs_dense": t_dense / t, "lowering": choice.label})
            print(_row(f"nm {pn}:{pm}", pn / pm, t, flops, t_dense) + f"   lowering picks {choice.label}")
    if torch:
        times = _torch_times(cases, threads, repeats)
        if times:
            print("\nPyTorch to_sparse_bsr (own process), effective GFLOP/s and ratio to our BSR kernel:")
            ours = {(r["shape"], r["kernel"], r["density"]): r["seconds"] for r in rows}
            for key, t in times.items():
                m, k, n, bh, bw, d, _ = cases[key]
                mine = ours[((m, k, n), f"bsr {bh}x{bw}", d)]
                print(f"  {m}x{k}x{n} bsr {bh}x{bw} density {d:.2f}: {2 * m * n * k / t / 1e9:7.1f} GFLOP/s "
                      f"({t * 1e3:.3f} ms; ours {t / mine:.2f}x faster)")
    return rows


FFN_SKIP = "*.q+*.k+*.v+*.o"
"""prune's skip list that leaves MiniLM's attention projections dense (only the FFN linears are pruned)."""


def _layer_seconds(profile: Any, layer: str) -> float:
    """Seconds of the kernel steps of `layer` (alone or as the first equation of a fused region)."""
    return sum(p.seconds for p in profile.nodes if p.name == layer or p.name.startswith(layer + "+"))


def minilm(threads: int, repeats: int, sparsities: tuple[float, ...] = (0.5, 0.8)) -> list[dict[str, Any]]:
    """all-MiniLM-L6-v2 at batch 1, seq 128: dense against its FFN linears block-pruned (32x32); end-to-end latency,
    the kernel each FFN layer got, and per layer the cost model's predicted speed-up next to the measured one."""
    from ..backends.cost import estimate
    from ..passes.pipeline import run_pipeline
    from ..runtime import compile as compile_graph
    from .models.minilm import minilm_graph

    numba.set_num_threads(threads)
    graph = minilm_graph(1, 128)
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(0, 1000, (1, 128)), "attention_mask": np.ones((1, 128), np.float32)}
    dense_exe = compile_graph(graph, backend="numba")
    dense_t = dense_exe.median_seconds(feeds, repeats)
    dense_prof = dense_exe.profile(feeds, repeats)
    dense_cost = estimate(graph, "cpu-host")
    ffn = [n.name for n in graph.nodes if n.op == "linear" and ".ffn_" in n.name]
    print(f"\nall-MiniLM-L6-v2, batch 1, seq 128, {threads} thread(s): dense {dense_t * 1e3:.2f} ms (median of "
          f"{repeats})")
    out = [{"model": "minilm", "sparsity": 0.0, "seconds": dense_t}]
    for sp in sparsities:
        pruned = run_pipeline(graph, f"prune{{pattern=block,block=32x32,sparsity={sp},ops=linear,skip={FFN_SKIP}}}")
        exe = compile_graph(pruned, backend="numba")
        t = exe.median_seconds(feeds, repeats)
        prof = exe.profile(feeds, repeats)
        cost = estimate(pruned, "cpu-host")
        layers = exe.stats["kernels_by_layer"]
        kinds = [layers[name]["kernel"] for name in ffn]
        print(f"FFN block-pruned {sp:.0%} (32x32): {t * 1e3:.2f} ms, {dense_t / t:.2f}x the dense model; FFN kernels: "
              + ", ".join(f"{kinds.count(kd)} {kd}" for kd in sorted(set(kinds))))
        print(f"  {'layer':<18} {'kernel':<10} {'predicted':>9} {'measured':>9}  reason")
        for name in ffn:
            pred = dense_cost[name].latency_s / cost[name].latency_s
            meas = _layer_seconds(dense_prof, name) / max(_layer_seconds(prof, name), 1e-12)
            print(f"  {name:<18} {layers[name]['kernel']:<10} {pred:>8.2f}x {meas:>8.2f}x  {layers[name]['reason']}")
        out.append({"model": "minilm", "sparsity": sp, "seconds": t, "kernels": kinds})
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: run the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=positive_int, default=numba.config.NUMBA_NUM_THREADS)
    p.add_argument("--repeats", type=positive_int, default=7)
    p.add_argument("--isa", type=str.lower, default=None, help="force the sparse kernels' path: avx512 or avx2")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch subprocess")
    p.add_argument("--only", choices=("gemm", "minilm"), default=None, help="run one part only")
    args = p.parse_args(argv)
    check_threads(p, "--threads", [args.threads])
    if args.isa is not None:
        reject_unknown(p, "--isa", [args.isa], [i.name.lower() for i in Isa], "sparse kernel path")
        if Isa[args.isa.upper()] not in HOST_ISAS:
            p.error(f"argument --isa: this host cannot execute the {args.isa} sparse kernels (it runs "
                    f"{', '.join(i.name.lower() for i in HOST_ISAS) or 'none'})")
    if args.only != "minilm":
        run(args.threads, args.repeats, args.isa, not args.no_torch)
    if args.only != "gemm":
        minilm(args.threads, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
