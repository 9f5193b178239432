"""Where dynamic int8 pays on the Numba backend: one-layer graphs, f32 against `quantize{scheme=dynamic,min_kn=0}`.

    python -m tensorsmith.bench.int8_breakeven [--repeats 41] [--rounds 3] [--shapes conv:3x16x32,linear:4096x64x64]

Each shape is a compiled one-layer graph (a 3x3 convolution, padding 1, on a batch of 4 square images, followed
by relu; or a linear of M rows followed by relu), f32 and with every product quantized (`min_kn=0`, so that
the rule under test does not decide), run alternately for `--rounds` rounds of `--repeats` runs. Prints the
median times, f32 / int8 (above 1: int8 pays), K, N, their harmonic mean and what `quantize`'s default rule
(`passes/quantize_size.py`, `DEFAULT_MIN_KN`) decides: the figures behind that default.
"""

from __future__ import annotations

import argparse

import numpy as np

from .. import runtime
from ..backends.numba.cpu_features import int8_paths
from ..ir import Graph, GraphBuilder, f32
from ..passes import run_pipeline
from ..passes.quantize_size import DEFAULT_MIN_KN
from .calibrate import median_time
from .kernels import table
from .options import positive_int, split_csv

DEFAULT_SHAPES = ("conv:1x16x32", "conv:3x16x32", "conv:3x64x32", "conv:8x16x32", "conv:8x64x32", "conv:16x32x16",
                  "conv:16x64x16", "conv:32x64x16", "conv:64x64x16", "linear:4096x27x64", "linear:4096x64x64",
                  "linear:4096x128x64", "linear:4096x128x256", "linear:128x256x256", "linear:8x512x256")
"""conv:CINxCOUTxSIZE (3x3, batch 4, SIZE x SIZE images) and linear:MxKxN."""
INT8_DYNAMIC_ALL = "quantize{scheme=dynamic,min_kn=0}"
"""Every product quantized, whatever its K and N."""


def layer_graph(spec: str, rng: np.random.Generator) -> tuple[Graph, dict[str, np.ndarray], int, int]:
    """(graph, inputs, K, N) of one shape spec; ValueError naming the spec when it does not parse."""
    kind, _, dims = spec.partition(":")
    try:
        a, b_, c = (int(d) for d in dims.split("x"))
    except ValueError:
        raise ValueError(f"shape {spec!r}: expected conv:CINxCOUTxSIZE or linear:MxKxN") from None
    if kind not in ("conv", "linear") or min(a, b_, c) < 1:
        raise ValueError(f"shape {spec!r}: expected conv:CINxCOUTxSIZE or linear:MxKxN with sizes >= 1")
    b = GraphBuilder(spec.replace(":", "_"))
    if kind == "conv":
        x = b.input("x", f32[4, a, c, c])
        w = b.const((rng.standard_normal((b_, a, 3, 3)) * 0.3).astype(np.float32), "w")
        b.output(b.relu(b.conv2d(x, w, b.const(np.zeros(b_, np.float32), "b"), pads=[1, 1, 1, 1], name="layer")))
        return b.build(), {"x": rng.standard_normal((4, a, c, c)).astype(np.float32)}, 9 * a, b_
    x = b.input("x", f32[a, b_])
    b.output(b.relu(b.linear(x, b.const(rng.standard_normal((c, b_)).astype(np.float32), "w"), name="layer")))
    return b.build(), {"x": rng.standard_normal((a, b_)).astype(np.float32)}, b_, c


def main(argv: list[str] | None = None) -> int:
    """Print f32 and int8 times per shape with the default rule's decision."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=positive_int, default=41)
    ap.add_argument("--rounds", type=positive_int, default=3)
    ap.add_argument("--shapes", default=",".join(DEFAULT_SHAPES))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    try:
        layers = [(s, *layer_graph(s, rng)) for s in split_csv(args.shapes)]
    except ValueError as e:
        ap.error(f"argument --shapes: {e}")
    if not int8_paths():
        print("this host executes no int8 path: nothing to compare")
        return 2
    rows = []
    for spec, g, feeds, k, n in layers:
        exes = {"f32": runtime.compile(g, backend="numba"),
                "int8": runtime.compile(run_pipeline(g, INT8_DYNAMIC_ALL), backend="numba")}
        ms: dict[str, list[float]] = {name: [] for name in exes}
        for _ in range(args.rounds):
            for name, exe in exes.items():
                ms[name].append(median_time(lambda e=exe, f=feeds: e.run(f), args.repeats, 3) * 1e3)
        f32_ms, int8_ms = (float(np.median(ms[name])) for name in exes)
        mean = 2 * k * n / (k + n)
        rows.append([spec, k, n, round(mean), f32_ms, int8_ms, f32_ms / int8_ms,
                     "int8" if mean >= DEFAULT_MIN_KN else "f32"])
    table(f"dynamic int8 against f32, one-layer graphs, int8 path {int8_paths()[0]}, median ms "
          f"(f32 / int8 above 1: int8 pays; default rule: int8 where the harmonic mean of K and N >= {DEFAULT_MIN_KN})",
          ["shape", "K", "N", "hmean", "f32 ms", "int8 ms", "f32 / int8", "rule keeps"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
