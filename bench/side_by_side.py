"""Two plans of one model compiled side by side in one process, timed in alternating rounds (medians).

A drift of the host's speed between rounds then hits both plans alike; `bench.conv_pool`, `bench.conv_mean` and
`bench.conv_layout` compare a kernel choice this way.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from .. import runtime
from ..backends.numba.k_microkernel import AVAILABLE, VW
from ..passes import run_pipeline
from .models import list_models, load_model
from .options import check_models, positive_int, split_csv
from .warmup import warm_up


def compare_pipelines(name: str, rounds: int, pipelines: dict[str, str], suffix: str,
                      **compile_options: Any) -> dict[str, float]:
    """Model `name` through each of two fuse `pipelines` (label -> pipeline), compiled side by side on the Numba
    backend with `compile_options` and timed in alternating rounds; the outputs must agree bit for bit (the fused
    tail keeps the same equations). Returns each label's median ms ("<label> ms") and "fused": how many kernels of
    the first plan end in `suffix` (the tail its pipeline takes into the regions)."""
    m = load_model(name)
    exes = {label: runtime.compile(run_pipeline(m.graph, p), backend="numba", fuse=False, **compile_options)
            for label, p in pipelines.items()}
    outs = [exe.run(m.inputs) for exe in exes.values()]
    if any(not np.array_equal(outs[0][k], outs[1][k]) for k in outs[0]):
        raise AssertionError(f"{name}: the outputs of {' and '.join(pipelines)} differ")
    first = next(iter(exes.values()))
    fused = sum(1 for s in first.plan.kernels() if s.kernel.split("[")[0].endswith(suffix))
    return {"fused": fused, **{f"{k} ms": v for k, v in alternate(exes, m.inputs, rounds).items()}}


def alternate(exes: dict[str, Any], feeds: dict[str, np.ndarray], rounds: int,
              min_seconds: float = 0.05) -> dict[str, float]:
    """Median ms per run of each executable after a warm-up, over `rounds` rounds that run each in turn (each round
    repeats a run for about `min_seconds`)."""
    for exe in exes.values():
        warm_up(lambda exe=exe: exe.run(feeds), 2)
    t0 = time.perf_counter()
    next(iter(exes.values())).run(feeds)
    reps = max(1, int(min_seconds / max(time.perf_counter() - t0, 1e-6)))
    times: dict[str, list[float]] = {k: [] for k in exes}
    for _ in range(rounds):
        for k, exe in exes.items():
            t0 = time.perf_counter()
            for _ in range(reps):
                exe.run(feeds)
            times[k].append((time.perf_counter() - t0) / reps)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def compare_main(argv: list[str] | None, doc: str, line: Callable[[str, int], str]) -> None:
    """The command line of a side-by-side benchmark: --models, --rounds; prints the CPU path, then `line(model,
    rounds)` per available model."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--models", default="cnn,cnn-digits,onnx-vgg19", help="zoo models, comma separated")
    p.add_argument("--rounds", type=positive_int, default=9)
    args = p.parse_args(argv)
    names = split_csv(args.models)
    check_models(p, "--models", names, unavailable_ok=True)
    available = {m.name for m in list_models() if m.available}
    path = (f"fp32 micro-kernel on {'AVX-512' if VW == 16 else 'AVX2'} ({VW} floats a vector)" if AVAILABLE
            else "no FMA: convolutions through BLAS")
    print(f"{path}; threads {numba.get_num_threads()}; medians of {args.rounds} alternating rounds, one process")
    for name in names:
        print(line(name, args.rounds) if name in available else f"{name}: not available here")
