"""Two plans of one model compiled side by side in one process, timed in alternating rounds (medians).

A drift of the host's speed between rounds then hits both plans alike; `bench.conv_pool` and `bench.conv_layout`
compare a kernel choice this way.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from ..backends.numba.k_microkernel import AVAILABLE, VW
from .models import list_models
from .warmup import warm_up


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
    p.add_argument("--models", default="cnn,cnn-digits,onnx-vgg19")
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args(argv)
    available = {m.name for m in list_models() if m.available}
    path = (f"fp32 micro-kernel on {'AVX-512' if VW == 16 else 'AVX2'} ({VW} floats a vector)" if AVAILABLE
            else "no FMA: convolutions through BLAS")
    print(f"{path}; threads {numba.get_num_threads()}; medians of {args.rounds} alternating rounds, one process")
    for name in [s.strip() for s in args.models.split(",") if s.strip()]:
        print(line(name, args.rounds) if name in available else f"{name}: not available here")
