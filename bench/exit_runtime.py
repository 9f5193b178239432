"""Benchmark: what stopping rows at an exit saves at run time, on both backends, against the graph without exits.

    python -m tensorsmith.bench.exit_runtime [--batch 64] [--repeats 21] [--backends reference,numba] [--serial]

The model is an MLP of six 1024-wide layers on [B, 256] inputs with exit heads (10 classes, max-prob) after
layers 2 and 4 and a final head. Each scenario sets exit 0's threshold to a quantile of the rows' largest
softmax probability at that head, so that a chosen share of the batch leaves there (exit 1 never fires): none,
half, 90 %, all. Figures are medians after warm-up (every bucket of rows compiled before timing); the plain
graph is the same network without exits. Rows left per exit and kernels run come from `exe.stats`.
`--serial` runs the Numba kernels' serial twins (steadier figures on a shared machine).
"""

from __future__ import annotations

import argparse

import numba
import numpy as np
from llvmlite import binding

from .. import runtime
from ..backends import reference
from ..ir import Graph, GraphBuilder, f32
from .kernels import medians, table
from .options import positive_int, reject_unknown, runtime_backends, split_csv

WIDTH, LAYERS, CLASSES, FEATURES = 1024, 6, 10, 256
EXIT_AFTER = (2, 4)
SHARES = (0.0, 0.5, 0.9, 1.0)


def host_path() -> str:
    """The host's vector extensions that LLVM compiles the kernels for."""
    feats = binding.get_host_cpu_features()
    return "avx512f" if feats.get("avx512f") else "avx2" if feats.get("avx2") else "sse"


def exit_net(batch: int, threshold0: float | None, seed: int = 0) -> Graph:
    """The benchmark MLP; `threshold0` None builds it without exits (the final head is the output)."""
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 1.4 / np.sqrt(shape[-1])).astype(np.float32)

    b = GraphBuilder("exit-net")
    h = b.input("x", f32[batch, FEATURES])
    pairs = []
    for i in range(1, LAYERS + 1):
        h = b.relu(b.linear(h, w(WIDTH, h.type.shape[-1]), w(WIDTH), name=f"fc{i}"), name=f"act{i}")
        if i in EXIT_AFTER:
            head = b.linear(h, w(CLASSES, WIDTH), w(CLASSES), name=f"head{len(pairs)}")
            if threshold0 is not None:
                first = not pairs
                fire = b.exit(head, criterion="max-prob" if first else "entropy",
                              threshold=threshold0 if first else 0.0, name=f"fire{len(pairs)}")
                pairs.append((head, fire))
    final = b.linear(h, w(CLASSES, WIDTH), w(CLASSES), name="final")
    if threshold0 is None:
        b.output(final)
        g = b.build(check=False)
        g.remove_dead_nodes()
        return g
    out, taken = b.exit_select(final, pairs, name="y")
    b.output(out, taken)
    return b.build()


def threshold_for(share: float, x: np.ndarray) -> float:
    """Exit 0's max-prob threshold that lets `share` of the rows of `x` leave there."""
    probe = exit_net(x.shape[0], 1.0)
    head = reference.run(probe, {"x": x}, keep=True)["head0"].astype(np.float64)
    p = np.exp(head - head.max(axis=1, keepdims=True))
    top = np.sort((p / p.sum(axis=1, keepdims=True)).astype(np.float32).max(axis=1))
    if share <= 0.0:
        return 1.0 if top[-1] < 1.0 else float(np.nextafter(np.float32(1.0), np.float32(2.0)))
    return float(top[max(0, int(round((1.0 - share) * len(top))))]) if share < 1.0 else 0.0


def main(argv: list[str] | None = None) -> int:
    """Print the run time of each scenario and backend, and its ratio to the graph without exits."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=positive_int, default=64)
    ap.add_argument("--repeats", type=positive_int, default=21)
    ap.add_argument("--backends", default="reference,numba", help="runtime backends, comma separated")
    ap.add_argument("--serial", action="store_true", help="Numba: serial kernels only")
    args = ap.parse_args(argv)
    backends = split_csv(args.backends)
    reject_unknown(ap, "--backends", backends, runtime_backends(), "backend")
    print(f"host {binding.get_host_cpu_name()} ({host_path()}), {numba.get_num_threads()} Numba threads")
    x = {"x": np.random.default_rng(1).standard_normal((args.batch, FEATURES)).astype(np.float32)}
    for backend in backends:
        opts = {"parallel_threshold": 1 << 62} if args.serial and backend == "numba" else {}
        plain = runtime.compile(exit_net(args.batch, None), backend=backend, **opts)
        exes = {s: runtime.compile(exit_net(args.batch, threshold_for(s, x["x"])), backend=backend, **opts)
                for s in SHARES}
        for exe in exes.values():
            exe.run(x)  # compiles the buckets this input needs
        times = medians({"plain": lambda p=plain: p.run(x), **{s: (lambda e=e: e.run(x)) for s, e in exes.items()}},
                        args.repeats)
        rows = []
        for s, exe in exes.items():
            st = exe.stats
            rows.append([f"{s:.0%} at exit 0", "/".join(map(str, st["exits"]["last"])), st["nodes_run"]["last"],
                         times[s] * 1e3, times[s] / times["plain"]])
        rows.append(["no exits (plain)", "-", "-", times["plain"] * 1e3, 1.0])
        title = f"{backend}{' (serial)' if opts else ''}: batch {args.batch}, {LAYERS} x {WIDTH} MLP"
        table(f"{title}, exits after layers {EXIT_AFTER}",
              ["scenario", "rows left at exit 0/1/end", "nodes or kernels run", "ms", "vs plain"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
