"""A/B of the AMX tile block's options in one process: the int8 GEMM (u8 x s8 -> i32) with and without the A prefetch.

    python -m tensorsmith.bench.amx_tiles [--repeats 11] [--rounds 7]

Both variants are the `gemm_i32` driver of the amx path compiled here (not cached) around a tile block built by
`make_tile_block` with `prefetch_a` on and off; every other part is the path's own. One thread; the variants
alternate for `--rounds` rounds and each figure is the median over rounds of the median of `--repeats` runs,
so a change of machine speed during the run hits both. Every output is checked against numpy's int64 product.
Needs a host with AMX (amx-int8) and Linux's permission for the tile state.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from ..backends.numba import int8_amx, int8_drivers
from ..backends.numba import int8_gemm as ig
from ..backends.numba.cpu_features import int8_paths
from ..backends.numba.jit import helper, specialized, subkernel
from .measure import time_runs

SHAPES = ((1024, 1024, 1024), (128, 768, 768), (128, 768, 3072), (128, 3072, 768), (128, 384, 1536),
          (128, 1536, 384), (16, 4096, 4096), (100, 1000, 1000))
"""(M, K, N): 1024^3, the BERT-base and MiniLM layer shapes, a memory-bound M and ragged sizes."""

PATH = "amx"


def gemm_variant(tag: str, prefetch_a: bool) -> Callable[..., Any]:
    """The amx path's `gemm_i32` driver (serial, uncached) around tile blocks with `prefetch_a` as given."""
    shape, kernels = ig.SHAPES[PATH], ig.UKERNELS[PATH]
    sizes = {"MR": shape.mr, "NR": shape.nr, "KC": ig.L1_WEIGHT_BLOCK // shape.nr,
             "EPILOGUE_PANELS": shape.epilogue_panels}
    rows = helper(specialized(int8_drivers.acc_rows, f"{PATH}_{tag}", UK_FULL=kernels[shape.mr], UK_FOUR=kernels[4],
                              UK_TWO=kernels[2], UK_ONE=kernels[1], **sizes))
    clear = helper(specialized(int8_drivers.clear_rows, f"{PATH}_{tag}", **sizes))
    panel = subkernel(specialized(int8_drivers.acc_panel_tiles, f"{PATH}_{tag}", ACC_ROWS=rows, CLEAR_ROWS=clear,
                                  TILE_32=int8_amx.make_tile_block(2, prefetch_a=prefetch_a),
                                  TILE_16=int8_amx.make_tile_block(1, prefetch_a=prefetch_a), **sizes))
    group = subkernel(specialized(int8_drivers.acc_group, f"{PATH}_{tag}", acc_panel=panel, **sizes))
    per_item = helper(specialized(int8_drivers.scratch_per_item, f"{PATH}_{tag}", **sizes))
    return numba.njit(error_model="numpy")(specialized(int8_drivers.gemm_i32, f"{PATH}_{tag}", acc_group=group,
                                                       scratch_per_item=per_item, TILES_BEGIN=int8_amx.tiles_begin,
                                                       TILES_END=int8_amx.tiles_end, **sizes))


def main(argv: list[str] | None = None) -> int:
    """Print GOP/s per shape for each variant and their ratio."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)
    if PATH not in int8_paths():
        print(f"this host does not execute the {PATH} path (int8 paths here: {', '.join(int8_paths()) or 'none'})")
        return 2
    numba.set_num_threads(1)
    variants = {"no prefetch": gemm_variant("nopf", False), "prefetch A": gemm_variant("pfa", True)}
    rng = np.random.default_rng(0)
    print("int8 GEMM (u8 x s8 -> i32) on the amx path, one thread, GOP/s (median over rounds)")
    for m, k, n in SHAPES:
        w = rng.integers(-127, 128, (n, k)).astype(np.int8)
        packed = ig.pack_int8_weights(w, np.ones(n, np.float32), PATH)
        xq = rng.integers(0, 256, (m, ig.padded_k(k))).astype(np.uint8)
        tm, tnp = ig.int8_tiles(m, n, PATH, 1, False)
        scratch = np.empty(ig.scratch_size(m, n, PATH, tm, tnp), np.int32)
        want = xq[:, :k].astype(np.int64) @ w.astype(np.int64).T
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, gemm in variants.items():
                out = np.empty((m, n), np.int32)
                gemm(xq, packed.data, out, tm, tnp, scratch)
                if not np.array_equal(out, want):
                    raise AssertionError(f"{name} differs from the int64 product at {m}x{k}x{n}")
                call = functools.partial(gemm, xq, packed.data, out, tm, tnp, scratch)
                seconds[name].append(time_runs(call, args.repeats, 3)[0] / 1e3)
        gops = {name: 2 * m * k * n / float(np.median(s)) / 1e9 for name, s in seconds.items()}
        print(f"{m}x{k}x{n}: " + "  ".join(f"{name} {g:.0f}" for name, g in gops.items())
              + f"  ratio {gops['prefetch A'] / gops['no prefetch']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
