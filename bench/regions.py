"""Benchmark: an elementwise chain as one generated region kernel vs one Numba kernel per op.

    python -m tensorsmith.bench.regions [--repeats N] [--threads serial,default]

The chain is ((x * a + b).gelu() * c).clip(-3, 3) with a and c per-column constants and b a scalar,
on a BERT-sized FFN activation (128x3072), a single short row (1x64) and the mlp model's hidden layers
(8x512, 8x256). Both graphs run on the Numba backend through `exe.run` (fresh output included), the
serial twins (`serial`) or the default parallel threshold (`default`); each figure is a median after
warm-up, each implementation timed in its own block. JIT compile time is printed apart.
"""

from __future__ import annotations

import argparse

import numba
import numpy as np
from llvmlite import binding

from ..backends.numba import DEFAULT_PARALLEL_THRESHOLD
from ..backends.numba.region_cache import cache_dir
from ..ir import Graph, GraphBuilder, f32
from ..ir.regions import make_region
from ..runtime.numba_exec import NumbaExecutable
from .kernels import medians, table
from .options import positive_int, reject_unknown, split_csv

SHAPES = ((128, 3072), (1, 64), (8, 512), (8, 256))
THRESHOLDS = {"serial": 1 << 62, "default": DEFAULT_PARALLEL_THRESHOLD}


def chain(shape: tuple[int, int], fused: bool, seed: int = 0) -> Graph:
    """((x * a + b).gelu() * c).clip(-3, 3) over x of `shape`, as one region when `fused`."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("chain")
    x = b.input("x", f32[shape])
    a = rng.uniform(-1, 1, shape[-1]).astype(np.float32)
    c = rng.uniform(-2, 2, shape[-1]).astype(np.float32)
    y = b.clip(b.mul(b.gelu(b.add(b.mul(x, a), np.float32(0.5))), c), min=-3.0, max=3.0)
    b.output(y)
    g = b.build()
    if fused:
        make_region(g, list(g.nodes))
    return g


def host_path() -> str:
    """The host's vector extensions that LLVM compiles the kernels for."""
    feats = binding.get_host_cpu_features()
    return "avx512f" if feats.get("avx512f") else "avx2" if feats.get("avx2") else "sse"


def main(argv: list[str] | None = None) -> int:
    """Print unfused vs fused run times and their ratio per shape and thread setting."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=positive_int, default=41)
    ap.add_argument("--threads", default="serial,default", help="comma list of: serial, default")
    args = ap.parse_args(argv)
    modes = split_csv(args.threads)
    reject_unknown(ap, "--threads", modes, THRESHOLDS, "thread setting")
    print(f"host {binding.get_host_cpu_name()} ({host_path()}), {numba.get_num_threads()} Numba threads, "
          f"region cache {cache_dir()}")
    rows = []
    for mode in modes:
        for shape in SHAPES:
            x = {"x": np.random.default_rng(1).uniform(-3, 3, shape).astype(np.float32)}
            unfused = NumbaExecutable(chain(shape, False), parallel_threshold=THRESHOLDS[mode])
            fused = NumbaExecutable(chain(shape, True), parallel_threshold=THRESHOLDS[mode])
            t = medians({"unfused": lambda u=unfused, x=x: u.run(x), "fused": lambda f=fused, x=x: f.run(x)},
                        args.repeats)
            rows.append([mode, "x".join(map(str, shape)), unfused.stats["kernels"], t["unfused"] * 1e6,
                         t["fused"] * 1e6, t["unfused"] / t["fused"], fused.stats["jit_seconds"]])
    table("elementwise chain: one generated region kernel vs one kernel per op (exe.run, median us)",
          ["threads", "shape", "unfused kernels", "unfused us", "fused us", "speed-up", "fused jit s"],
          rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
