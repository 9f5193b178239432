"""Latency idle and with another process keeping one core busy, and the cost of alternating numpy and tensorsmith.

    python -m tensorsmith.bench.under_load [--models mlp,cnn,transformer-block] [--repeats 41] [--rounds 2]

Starts its own busy process (a Python loop) for the loaded phases. Idle and loaded phases alternate
`rounds` times and each figure is the median over all its phases, so that the ratios compare runs of
one session. ONNX Runtime runs in its own process (`peer_process`). The alternating case times a
128x768x3072 product in numpy and as a tensorsmith linear on the Numba backend, each alone and each
right after the other, plus the linear right after a small numpy product (8x256x512).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from ..backends.numba.threads import start_pool
from ..ir import GraphBuilder, f32, to_onnx
from ..runtime import compile as compile_graph
from .models import load_model
from .options import check_models, positive_int, split_csv
from .peer_process import time_onnx_in_subprocess

BUSY_LOOP = "while True: pass"


@contextmanager
def busy_core() -> Iterator[None]:
    """Another process keeping one core busy while the body runs."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    time.sleep(0.3)
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def times(fn: Callable[[], object], repeats: int, warmup: int = 3) -> list[float]:
    """Wall times of `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def alternating(repeats: int) -> list[tuple[str, float, float]]:
    """(case, alone ms, alternating ms) for numpy and tensorsmith products run one after the other."""
    rng = np.random.default_rng(0)
    m, k, n = 128, 768, 3072
    b = GraphBuilder("linear")
    x = b.input("x", f32[m, k])
    b.output(b.linear(x, rng.standard_normal((n, k)).astype(np.float32), name="y"))
    exe = compile_graph(b.build(), backend="numba")
    xa = rng.standard_normal((m, k)).astype(np.float32)
    wt = rng.standard_normal((k, n)).astype(np.float32)
    small_a, small_b = rng.standard_normal((8, 256)).astype(np.float32), rng.standard_normal((256, 512)).astype(
        np.float32)

    def ts() -> object:
        return exe.run({"x": xa})

    def npy() -> object:
        return xa @ wt

    def small() -> object:
        return small_a @ small_b

    ts_alone = np.median(times(ts, repeats))
    np_alone = np.median(times(npy, repeats))
    ts_after_np, np_after_ts, ts_after_small = [], [], []
    for _ in range(repeats):
        npy()
        ts_after_np += times(ts, 1, 0)
        np_after_ts += times(npy, 1, 0)
        small()
        ts_after_small += times(ts, 1, 0)
    return [("tensorsmith linear after a numpy product", ts_alone * 1e3, np.median(ts_after_np) * 1e3),
            ("numpy product after a tensorsmith linear", np_alone * 1e3, np.median(np_after_ts) * 1e3),
            ("tensorsmith linear after a small numpy product", ts_alone * 1e3, np.median(ts_after_small) * 1e3)]


def main(argv: list[str] | None = None) -> None:
    """Print idle and loaded latencies per model and backend (and ONNX Runtime), then the alternating case."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mlp,cnn,transformer-block", help="zoo models, comma separated")
    p.add_argument("--repeats", type=positive_int, default=41)
    p.add_argument("--rounds", type=positive_int, default=2)
    args = p.parse_args(argv)
    names = split_csv(args.models)
    check_models(p, "--models", names)
    layer = start_pool()
    with open("/proc/loadavg") as f:
        load = f.read().split()[:4]
    print(f"threading layer {layer}; load average at start {' '.join(load)} (others' work counts as idle here)")
    runs: dict[tuple[str, str], tuple[Callable[[], object], bytes, dict[str, np.ndarray]]] = {}
    for name in names:
        model = load_model(name)
        onnx_bytes = to_onnx(model.graph).SerializeToString()
        for backend in ("numba", "reference"):
            exe = compile_graph(model.graph, backend=backend)
            runs[(name, backend)] = (lambda exe=exe, x=model.inputs: exe.run(x), onnx_bytes, model.inputs)
    idle: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
    loaded: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for key, (fn, _, _) in runs.items():
            idle[key] += times(fn, args.repeats)
        with busy_core():
            for key, (fn, _, _) in runs.items():
                loaded[key] += times(fn, args.repeats)
    for name in names:
        _, onnx_bytes, inputs = runs[(name, "numba")]
        ort_idle = time_onnx_in_subprocess(onnx_bytes, inputs, repeats=args.repeats).median_s
        with busy_core():
            ort_loaded = time_onnx_in_subprocess(onnx_bytes, inputs, repeats=args.repeats).median_s
        idle[(name, "onnxruntime")], loaded[(name, "onnxruntime")] = [ort_idle], [ort_loaded]
    print(f"\n{'model':<20} {'backend':<12} {'idle ms':>9} {'loaded ms':>10} {'ratio':>6}")
    for (name, backend) in sorted(idle):
        a, b = np.median(idle[(name, backend)]) * 1e3, np.median(loaded[(name, backend)]) * 1e3
        print(f"{name:<20} {backend:<12} {a:9.3f} {b:10.3f} {b / a:6.2f}")
    print(f"\n{'case':<48} {'alone ms':>9} {'alternating ms':>15} {'ratio':>6}")
    for case, alone, alt in alternating(args.repeats):
        print(f"{case:<48} {alone:9.3f} {alt:15.3f} {alt / alone:6.2f}")


if __name__ == "__main__":
    main()
