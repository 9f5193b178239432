"""What pooling inside the convolution buys: `fuse` against `fuse{pool=false}` on models with 2x2 max pools.

    python -m tensorsmith.bench.conv_pool --models cnn,cnn-digits,onnx-vgg19 --rounds 9

Both graphs are compiled side by side in one process and timed in alternating rounds (medians of the
rounds), so a drift of the host's speed hits both alike; the outputs must agree bit for bit (the pool in
the kernel keeps the same equations).
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from .. import runtime
from ..backends.numba.k_microkernel import AVAILABLE, VW
from ..passes import run_pipeline
from .models import list_models, load_model
from .warmup import warm_up


def measure(name: str, rounds: int, min_seconds: float = 0.05) -> dict[str, float]:
    """Median ms per run with the pool in the convolution's kernel and after it, and how many pools were fused."""
    m = load_model(name)
    graphs = {"pool in kernel": run_pipeline(m.graph, "fuse"), "pool after": run_pipeline(m.graph, "fuse{pool=false}")}
    exes = {k: runtime.compile(g, backend="numba", fuse=False) for k, g in graphs.items()}
    outs = [exe.run(m.inputs) for exe in exes.values()]
    if any(not np.array_equal(outs[0][k], outs[1][k]) for k in outs[0]):
        raise AssertionError(f"{name}: the pooled kernels' outputs differ from the separate pool's")
    for exe in exes.values():
        warm_up(lambda exe=exe: exe.run(m.inputs), 2)
    t0 = time.perf_counter()
    exes["pool after"].run(m.inputs)
    reps = max(1, int(min_seconds / max(time.perf_counter() - t0, 1e-6)))
    times: dict[str, list[float]] = {k: [] for k in exes}
    for _ in range(rounds):
        for k, exe in exes.items():
            t0 = time.perf_counter()
            for _ in range(reps):
                exe.run(m.inputs)
            times[k].append((time.perf_counter() - t0) / reps)
    fused = sum(1 for s in exes["pool in kernel"].plan.steps if s.kernel.split("[")[0].endswith("+maxpool2x2"))
    return {"pools fused": fused, **{f"{k} ms": float(np.median(v)) * 1e3 for k, v in times.items()}}


def main(argv: list[str] | None = None) -> None:
    """Print one line per model: both medians and their ratio."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="cnn,cnn-digits,onnx-vgg19")
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args(argv)
    available = {m.name for m in list_models() if m.available}
    path = (f"fp32 micro-kernel on {'AVX-512' if VW == 16 else 'AVX2'} ({VW} floats a vector)" if AVAILABLE
            else "no FMA: convolutions through BLAS, pools apart")
    print(f"{path}; threads {numba.get_num_threads()}; medians of {args.rounds} alternating rounds, one process")
    for name in [s.strip() for s in args.models.split(",") if s.strip()]:
        if name not in available:
            print(f"{name}: not available here")
            continue
        r = measure(name, args.rounds)
        ratio = r["pool after ms"] / r["pool in kernel ms"]
        print(f"{name}: {r['pools fused']} pools in the convolution: {r['pool in kernel ms']:.4g} ms, "
              f"pools after: {r['pool after ms']:.4g} ms ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
