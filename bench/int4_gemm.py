"""Benchmark of the INT4 weight-only GEMM against our own fp32 linear, few rows (the memory-bound case).

    python -m tensorsmith.bench.int4_gemm                     # M = 1, 4, 16; K = N = 4096; 1 and 2 threads
    python -m tensorsmith.bench.int4_gemm --repeats 21 --threads 1 --rows 1

Each figure is one `linear` y = x @ W^T (W [N, K]) compiled by `runtime.compile(..., backend="numba")`
and run through `Executable.run`, f32 in and f32 out: `fp32` with W as an f32 constant (our GEMV /
packed GEMM), `int4 gG` with W quantized by `quantize{precision=int4,group_size=G}` (the weight-only
GEMM reading packed nibbles; the kernel that ran is printed). Medians of --repeats runs after warm-up;
the JIT compile time (the first run) is reported apart. The fp32 weights are 64 MiB and do not fit
in cache, the int4 ones 8 MiB plus the scales.
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any

import numba
import numpy as np
from llvmlite import binding as llvm

from .. import runtime
from ..ir import Graph, GraphBuilder, f32
from ..passes import run_pipeline
from .kernels import medians, table
from .options import check_threads, positive_int, positive_ints

GROUPS = (32, 128)
"""Group sizes along K of the int4 weights."""


def cpu_line() -> str:
    """The CPU Numba compiles for and its vector extensions that matter here."""
    feats = llvm.get_host_cpu_features()
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vnni") if feats.get(f)]
    cpu = platform.processor() or platform.machine()
    return f"CPU: {cpu}, LLVM target {llvm.get_host_cpu_name()} ({', '.join(isa)})"


def linear_graph(m: int, k: int, n: int, seed: int = 0) -> Graph:
    """One f32 linear y = x @ W^T, W [n, k] random normal."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"linear_{m}x{k}x{n}")
    x = b.input("x", f32[m, k])
    b.output(b.linear(x, b.const(rng.standard_normal((n, k), dtype=np.float32), "w"), name="y"))
    return b.build()


def _compiled(g: Graph, x: np.ndarray) -> tuple[Any, float, str]:
    """(executable, seconds of the first run (JIT and packing included), kernel of the linear)."""
    t = time.perf_counter()
    exe = runtime.compile(g, backend="numba")
    exe.run({"x": x})
    first = time.perf_counter() - t
    kernel = next((s.kernel for s in exe.plan.steps if not s.is_view), "?")
    return exe, first, kernel


def bench(m: int, k: int, n: int, threads: int, repeats: int) -> tuple[dict[str, float], dict[str, float],
                                                                       dict[str, str]]:
    """(median seconds, first-run seconds, kernel) per implementation for one shape at `threads` threads."""
    numba.set_num_threads(threads)
    g = linear_graph(m, k, n)
    x = np.random.default_rng(1).standard_normal((m, k), dtype=np.float32)
    graphs = {"fp32": g} | {f"int4 g{gs}": run_pipeline(g, f"quantize{{precision=int4,group_size={gs}}}")
                            for gs in GROUPS}
    fns, first, kernels = {}, {}, {}
    for name, gr in graphs.items():
        exe, first[name], kernels[name] = _compiled(gr, x)
        fns[name] = lambda e=exe: e.run({"x": x})
    return medians(fns, repeats), first, kernels


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print milliseconds, speed-up over fp32 and the kernels that ran."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=positive_int, default=11)
    ap.add_argument("--rows", type=positive_ints, default="1,4,16", help="values of M, comma separated")
    ap.add_argument("--threads", type=positive_ints, default="1,2", help="thread counts, comma separated")
    ap.add_argument("--k", type=positive_int, default=4096)
    ap.add_argument("--n", type=positive_int, default=4096)
    args = ap.parse_args(argv)
    check_threads(ap, "--threads", args.threads)
    print(cpu_line())
    rows, firsts = [], []
    names: list[str] = []
    for threads in args.threads:
        for m in args.rows:
            t, first, kernels = bench(m, args.k, args.n, threads, args.repeats)
            names = names or list(t)
            rows.append([f"{m}x{args.k}x{args.n}", threads] + [t[c] * 1e3 for c in names]
                        + [t["fp32"] / t[c] for c in names[1:]])
            firsts.append([f"{m}x{args.k}x{args.n}", threads] + [first[c] for c in names]
                          + [" / ".join(kernels[c] for c in names)])
    table("milliseconds per run (median of --repeats), and fp32 time / int4 time", ["M x K x N", "threads"]
          + [f"{c} ms" for c in names] + [f"{c} speed-up" for c in names[1:]], rows)
    table("first run in seconds (compile, JIT or cache load, packing), and the kernels that ran",
          ["M x K x N", "threads"] + [f"{c} s" for c in names] + ["kernels"], firsts)


if __name__ == "__main__":
    main()
